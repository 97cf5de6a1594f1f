"""The demo's base model: built once into the cache, quietly, and reused."""
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
