"""The preprocessing that belongs to a set of weights (it travels with them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# How a non-square image becomes the square model input. crop: short side to ``resize``, centre
# crop (the weights' own evaluation protocol); pad: long side to ``crop``, letterboxed with the
# mean colour (keeps the whole image); stretch: straight to crop x crop (ignores aspect ratio).
from linprobe.features.croploss import RESIZE_MODES

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize`` px, centre-crop ``crop`` px, normalise per channel.

    ``resize_mode`` 'pad' / 'stretch' replace the first two steps (see RESIZE_MODES); ``resize``
    is then unused. The model input is (3, crop, crop) float32 in every mode.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    resize_mode: str = "crop"

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"The '{name}' parameter of Preprocess must be a positive int. Got {value!r} instead."
                )
        if self.resize < self.crop:
            raise ValueError(
                f"Preprocess 'resize' ({self.resize}) must be >= 'crop' ({self.crop}): "
                "the centre crop is taken from the resized image."
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"The 'interpolation' parameter of Preprocess must be one of {INTERPOLATIONS}. "
                f"Got {self.interpolation!r} instead."
            )
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"The 'resize_mode' parameter of Preprocess must be one of {list(RESIZE_MODES)}. "
                f"Got {self.resize_mode!r} instead."
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(
                    f"The '{name}' parameter of Preprocess must have 3 values (RGB). Got {value!r} instead."
                )
            # Normalise to a tuple of floats so equality and to_dict() are stable.
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if min(self.std) <= 0:
            raise ValueError(f"The 'std' parameter of Preprocess must be > 0. Got {self.std!r} instead.")

    def to_dict(self) -> dict:
        """Plain dict (lists for mean/std) for HDF5 attrs and JSON."""
        out = asdict(self)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocess":
        """Inverse of :meth:`to_dict`."""
        return cls(
            resize=int(data["resize"]),
            crop=int(data["crop"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=str(data["interpolation"]),
            # Files written before the modes existed were all cropped.
            resize_mode=str(data.get("resize_mode", "crop")),
        )

    @property
    def pad_colour(self) -> tuple[int, int, int]:
        """uint8 RGB of the weights' mean: the letterbox colour, which normalises to zero."""
        r, g, b = (min(255, max(0, round(m * 255))) for m in self.mean)
        return r, g, b

    def with_image_size(self, image_size: int | None) -> "Preprocess":
        """Same normalisation, crop = ``image_size``, resize keeps the weights' resize/crop ratio."""
        if image_size is None:
            return self
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(
                f"The 'image_size' parameter must be a positive int (pixels). Got {image_size!r} instead."
            )
        resize = max(image_size, round(image_size * self.resize / self.crop))
        return replace(self, resize=resize, crop=image_size)
