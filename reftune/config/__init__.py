"""One config dataclass per stage, built from small option groups; the docstring under each field is
its `--help` text (reftune.config.options turns them into flags and reads YAML)."""
from reftune.config.baselines import CompareConfig, OfflineSTConfig, OnlineSTConfig, VerifierConfig, parse_runs
from reftune.config.data import AnnotateConfig, ServeConfig
from reftune.config.groups import (ModelOptions, OnPolicyOptions, RunOptions, SamplingOptions, TaskOptions, TinySpec,
                                   TrainingOptions, TrainingSamplesOptions, parse_task_options,
                                   require_at_least_one, sinks)
from reftune.config.stages import DemoConfig, EvalConfig, RLConfig, SampleConfig, SFTConfig

__all__ = ["AnnotateConfig", "CompareConfig", "DemoConfig", "EvalConfig", "ModelOptions", "OfflineSTConfig",
           "OnPolicyOptions", "OnlineSTConfig", "RLConfig", "RunOptions", "SFTConfig", "SampleConfig", "SamplingOptions",
           "ServeConfig", "TaskOptions", "TinySpec", "TrainingOptions", "TrainingSamplesOptions", "VerifierConfig",
           "parse_runs", "parse_task_options", "require_at_least_one", "sinks"]
