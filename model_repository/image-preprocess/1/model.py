"""image-preprocess: encoded image bytes -> letterboxed, normalized CHW float tensor.

Input  IMAGE     BYTES [B,1]         one encoded image (JPEG, PNG, or anything Pillow decodes) per item
Output INPUT     FP32  [B,3,S,S]     RGB, CHW, (pixel/255 - mean) / std with ImageNet mean/std
Output LETTERBOX FP32  [B,5]         (scale, pad_x, pad_y, orig_w, orig_h)

Letterbox: the image is resized by scale = min(S/orig_w, S/orig_h) (aspect ratio kept) to
(round(orig_w*scale), round(orig_h*scale)) and centered on an S x S canvas filled with gray
114 (the YOLO/letterbox convention), pad_x = (S - new_w) // 2, pad_y = (S - new_h) // 2. A point
maps as input = orig * scale + pad, so orig = (input - pad) / scale (centernet-postprocess).
The padding is gray 114 BEFORE normalization, so it is ~0 after it (close to the mean).

A request whose image cannot be decoded gets an error response; the other requests of the
same execute() call are answered normally.
"""

import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image, UnidentifiedImageError

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PAD_VALUE = 114  # gray, in 0..255 pixel units


def _parameter(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        size = int(_parameter(config, "input_size", "256"))
        dims = list(pb_utils.get_output_config_by_name(config, "INPUT")["dims"])
        if dims != [3, size, size]:
            raise pb_utils.TritonModelException(
                f"image-preprocess: output INPUT dims {dims} do not match parameter input_size={size}: expected [3, {size}, {size}]"
            )
        self.size = size
        # normalized = pixel * scale + shift, per channel, broadcast over [B,3,S,S]
        self.scale = (1.0 / (255.0 * STD)).astype(np.float32).reshape(3, 1, 1)
        self.shift = (-MEAN / STD).astype(np.float32).reshape(3, 1, 1)

    def _letterbox(self, data, canvas, letterbox):
        """Decode one encoded image into canvas (an S x S x 3 uint8 view); fill its 5 letterbox values."""
        size = self.size
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        scale = min(size / width, size / height)
        new_w = min(size, max(1, round(width * scale)))
        new_h = min(size, max(1, round(height * scale)))
        # JPEG: let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) no smaller than the target.
        image.draft("RGB", (new_w, new_h))
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (new_w, new_h):
            image = image.resize((new_w, new_h), Image.BILINEAR)
        pad_x = (size - new_w) // 2
        pad_y = (size - new_h) // 2
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = np.asarray(image)
        letterbox[:] = (scale, pad_x, pad_y, width, height)

    def execute(self, requests):
        size = self.size
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            batch = images.shape[0]
            canvas = np.full((batch, size, size, 3), PAD_VALUE, dtype=np.uint8)
            letterbox = np.empty((batch, 5), dtype=np.float32)
            try:
                for i in range(batch):
                    try:
                        self._letterbox(images[i], canvas[i], letterbox[i])
                    except UnidentifiedImageError as exc:
                        raise ValueError(f"IMAGE item {i} of the batch is not a decodable image: unknown or corrupt image format") from exc
                    except Exception as exc:  # truncated or corrupt data: OSError, ValueError, SyntaxError, ...
                        raise ValueError(f"IMAGE item {i} of the batch is not a decodable image: {type(exc).__name__}: {exc}") from exc
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"image-preprocess: {exc}")))
                continue
            # HWC uint8 -> CHW float32 in one pass, then normalize in place (vectorized over the batch).
            tensor = np.empty((batch, 3, size, size), dtype=np.float32)
            np.copyto(tensor, canvas.transpose(0, 3, 1, 2))
            tensor *= self.scale
            tensor += self.shift
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("INPUT", tensor), pb_utils.Tensor("LETTERBOX", letterbox)]
                )
            )
        return responses
