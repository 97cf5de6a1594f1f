"""The demo's base model: built once into the cache, quietly, and reused; the packaged one for the
demo's default settings, copied instead of built."""
import shutil

from reftune.config import TinySpec
from reftune.stages.pretrain import BaseSpec, pretrain_base


def test_the_base_is_built_once_quietly_then_read_from_the_cache(tmp_path, monkeypatch, capfd):
    import transformers

    monkeypatch.setenv("REFTUNE_CACHE", str(tmp_path))
    # Another test may have quietened transformers already; start loud so that this one can fail.
    transformers.utils.logging.enable_progress_bar()
    spec = BaseSpec(model=TinySpec(hidden_size=32, num_layers=1), corpus_problems=60, corpus_statements=120,
                    steps=3, block_size=64, batch_size=4)
    folder = pretrain_base(spec, show_progress=False)
    captured = capfd.readouterr()
    assert (folder / "config.json").exists() and folder.parent.parent == tmp_path
    assert captured.err == "" and captured.out == "", captured
    modified = (folder / "config.json").stat().st_mtime_ns
    assert pretrain_base(spec, show_progress=False) == folder  # cached: not built again
    assert (folder / "config.json").stat().st_mtime_ns == modified


def test_the_packaged_base_is_the_demos_default_and_a_first_demo_copies_it(tmp_path, monkeypatch):
    """The packaged base was built for the spec the default demo asks for (a change to BaseSpec or to
    the demo's task options without a new packaged base would silently build instead): copied into
    an empty cache as it is, and loadable."""
    from reftune.config import DemoConfig
    from reftune.model.loading import load_policy
    from reftune.stages.demo import make_plan
    from reftune.stages.pretrain import PACKAGED_BASE, packaged_base

    spec = make_plan(DemoConfig()).base_spec
    assert packaged_base(spec) == PACKAGED_BASE
    assert packaged_base(BaseSpec(task_options=spec.task_options, steps=spec.steps + 1)) is None
    monkeypatch.setenv("REFTUNE_CACHE", str(tmp_path))
    folder = pretrain_base(spec, show_progress=False)
    assert folder.parent.parent == tmp_path
    assert (folder / "model.safetensors").read_bytes() == (PACKAGED_BASE / "model.safetensors").read_bytes()
    policy = load_policy(str(folder))
    assert policy.model.config.hidden_size == spec.model.hidden_size and policy.tokenizer.vocab_size == 400


def test_build_replaces_a_packaged_copy_and_keeps_a_base_built_here(tmp_path, monkeypatch):
    import json

    from reftune.stages import pretrain

    spec = BaseSpec(model=TinySpec(hidden_size=32, num_layers=1), corpus_problems=60, corpus_statements=120,
                    steps=3, block_size=64, batch_size=4)
    monkeypatch.setenv("REFTUNE_CACHE", str(tmp_path / "built"))
    built = pretrain_base(spec, show_progress=False)
    # a package whose base was built for this spec (here: the build above, marked as packaged)
    package = tmp_path / "package"
    shutil.copytree(built, package)
    record = json.loads((package / "reftune_base.json").read_text())
    (package / "reftune_base.json").write_text(json.dumps({**record, "packaged": "for this test"}))
    monkeypatch.setattr(pretrain, "PACKAGED_BASE", package)
    monkeypatch.setenv("REFTUNE_CACHE", str(tmp_path / "cache"))
    copied = pretrain_base(spec, show_progress=False)
    assert pretrain.is_packaged_copy(copied)
    rebuilt = pretrain_base(spec, show_progress=False, build=True)
    assert rebuilt == copied and not pretrain.is_packaged_copy(rebuilt)
    modified = (rebuilt / "model.safetensors").stat().st_mtime_ns
    assert pretrain_base(spec, show_progress=False, build=True) == rebuilt  # built here: kept
    assert (rebuilt / "model.safetensors").stat().st_mtime_ns == modified
    assert sorted(p.name for p in rebuilt.parent.iterdir()) == [rebuilt.name]  # no scratch or replaced folder left
