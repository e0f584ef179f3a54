"""The trained models are DVC artifacts: a tagged version is fetched by `dvc artifacts get`."""

import pytest
from conftest import DATASETS, sh


@pytest.mark.e2e
def test_a_tagged_model_is_fetched_by_dvc_artifacts_get(rebuilt, tmp_path):
    for name in DATASETS:  # an annotated tag per version, as `gto register` writes it
        sh("git", "tag", "-a", f"{name}@v1.0.0", "-m", f"{name} v1.0.0", cwd=rebuilt)
    for name in DATASETS:
        out = tmp_path / f"{name}.safetensors"
        sh("dvc", "artifacts", "get", rebuilt, name, "--rev", "v1.0.0", "-o", out, cwd=tmp_path)
        assert out.read_bytes() == (rebuilt / "models" / f"{name}.safetensors").read_bytes()
    result = sh("dvc", "artifacts", "get", rebuilt, "nothing", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Unable to find artifact 'nothing'" in result.stderr
