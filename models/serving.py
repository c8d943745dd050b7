"""The registered classifier as people use it: raw images in, class names and probabilities out.

MLflow logs this file as the model's code ("models from code": nothing is pickled) next to the weights
in safetensors and a JSON card (timm model name, class names, image size). Inputs, each image either
a uint8 H x W x 3 array or the bytes of an image file (PNG, JPEG, ...):
- an array (one image, or a batch N x H x W x 3), or a list of images;
- a DataFrame with an `image` column (bytes, or base64 text as a REST request carries them).
Output: a DataFrame with `label` (the class name) and one probability column per class.
"""
from __future__ import annotations

import base64
import io
import json

import mlflow
import numpy as np
import pandas as pd
import timm
import torch
from mlflow.pyfunc import PythonModel
from PIL import Image
from safetensors.torch import load_file
from timm.data import create_transform, resolve_data_config


def to_image(item) -> Image.Image:
    if isinstance(item, str):  # base64 text (REST)
        item = base64.b64decode(item)
    if isinstance(item, (bytes, bytearray)):
        with Image.open(io.BytesIO(item)) as image:
            return image.convert("RGB")
    array = np.asarray(item)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"an image must be uint8 H x W x 3 or file bytes, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def to_images(model_input) -> list[Image.Image]:
    if isinstance(model_input, pd.DataFrame):
        if "image" not in model_input:
            raise ValueError(f"expected a column `image`, got {list(model_input.columns)}")
        return [to_image(item) for item in model_input["image"]]
    if isinstance(model_input, np.ndarray) and model_input.ndim == 3:
        return [to_image(model_input)]
    return [to_image(item) for item in model_input]


class ImageClassifier(PythonModel):
    def load_context(self, context) -> None:
        card = json.loads(open(context.artifacts["card"]).read())
        self.classes = card["classes"]
        self.network = timm.create_model(card["model"], pretrained=False, num_classes=len(self.classes))
        self.network.load_state_dict(load_file(context.artifacts["weights"]))
        self.network.eval()
        size = card["image_size"]
        self.transform = create_transform(
            **resolve_data_config({"input_size": (3, size, size), "crop_pct": 1.0}, model=self.network),
            is_training=False)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        images = to_images(model_input)
        with torch.no_grad():
            batch = torch.stack([self.transform(image) for image in images])
            probabilities = self.network(batch).softmax(1).numpy()
        frame = pd.DataFrame(probabilities, columns=self.classes)
        frame.insert(0, "label", [self.classes[i] for i in probabilities.argmax(1)])
        return frame


mlflow.models.set_model(ImageClassifier())
