"""Content digests: a pipeline folder is named by its files' paths and bytes, a hub id by itself."""
from models.digests import file_digest, model_identity


def test_a_folder_digest_follows_its_files_bytes_and_names_not_its_readme(tmp_path):
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "unet" / "weights.safetensors").write_bytes(b"\0" * (3 << 20))  # more than one read block
    (model / "model_index.json").write_text("{}")
    before = model_identity(str(model))
    (model / "README.md").write_text("notes")
    assert model_identity(str(model)) == before
    (model / "unet" / "weights.safetensors").write_bytes(b"\0" * (3 << 20) + b"\1")
    changed = model_identity(str(model))
    assert changed != before
    (model / "unet" / "weights.safetensors").rename(model / "unet" / "other.safetensors")
    assert model_identity(str(model)) != changed  # same bytes under another name
    assert model_identity("runwayml/stable-diffusion-v1-5") == "runwayml/stable-diffusion-v1-5"
    assert len(file_digest(model / "model_index.json")) == 64
