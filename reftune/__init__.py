"""reftune: Reinforced Fine-Tuning (ReFT, Luong et al., ACL 2024) for reasoning with checkable answers.

The Python API is the stages the CLI runs, each a function of its config that returns a typed summary:

    from reftune import RLConfig, SFTConfig, rl, sft

    warm = sft(SFTConfig(task="arithmetic", model="tiny", epochs=2, output="runs/warm"))
    reft = rl(RLConfig(task="arithmetic", model=warm.best_model, max_steps=20, output="runs/reft"))

Names load on first use, so `import reftune` stays light (no torch) for the web app and the CLI.
"""

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "sft": "reftune.stages.sft", "rl": "reftune.stages.rl", "online_st": "reftune.stages.online_st",
    "verifier": "reftune.stages.verifier", "evaluate": "reftune.stages.evaluate", "demo": "reftune.stages.demo",
    "compare": "reftune.stages.compare",
    **dict.fromkeys(["SFTConfig", "OfflineSTConfig", "RLConfig", "OnlineSTConfig", "VerifierConfig", "EvalConfig",
                     "SampleConfig", "CompareConfig", "DemoConfig"], "reftune.config"),
    **dict.fromkeys(["TrainingSummary", "SFTSummary", "RLSummary", "OnlineSTSummary", "VerifierSummary",
                     "EvalSummary"], "reftune.training.summaries"),
    "get_task": "reftune.tasks", "Task": "reftune.tasks", "Example": "reftune.tasks",
    "score_completions": "reftune.scoring.rewards", "RewardFn": "reftune.scoring.rewards",
    "ReftuneError": "reftune.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'reftune' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
