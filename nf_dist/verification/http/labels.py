"""The top-1 label in whatever form an API answers one image.

Accepted per image: a class index (``3``), a class name (``"cat"``, through
``endpoint.class_names``; a string of digits is an index), scores or logits (``[0.1, 2.3, ...]``,
one per class: the arg-max), a ``{class: score}`` mapping (TorchServe; its best key), a list of
``{"label", "score"}`` (Hugging Face; the best label) or ``{"label": ...}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nf_dist.verification.http.problems import EndpointError, RetryableError


class LabelReader:
    """Reads labels for one endpoint (its class names and count)."""

    def __init__(self, url: str, num_classes: int, class_names: tuple[str, ...]) -> None:
        self.url, self.num_classes, self.class_names = url, num_classes, class_names

    def top1(self, value: Any) -> int:
        """One image's label (see the module docstring).

        Raises:
            RetryableError: the answer is not a label in any accepted form.
            EndpointError: a label outside ``[0, num_classes)``, or a name the config lacks.
        """
        if isinstance(value, bool):
            raise RetryableError(f"answered {value!r} where a label belongs")
        if isinstance(value, int):
            return self.index(value)
        if isinstance(value, str):
            return self.name(value)
        if isinstance(value, Mapping):
            if "label" in value:
                return self.top1(value["label"])
            return self.name(str(_best(list(value.items()))))
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            try:
                pairs = [(v["label"], v["score"]) for v in value]
            except KeyError as exc:
                raise RetryableError(f"an entry lacks {exc} in a label/score list") from exc
            return self.top1(_best(pairs))
        if isinstance(value, list) and value and all(_is_number(v) for v in value):
            return self.scores([float(v) for v in value])
        raise RetryableError(f"answered {short(value)} where a label belongs")

    def scores(self, row: list[float]) -> int:
        """The arg-max of one image's scores (the first of equal bests)."""
        if len(row) != self.num_classes:
            raise EndpointError(
                f"{self.url} answered {len(row)} scores per image for {self.num_classes} "
                "classes; set endpoint.num_classes to the suspect's class count"
            )
        if any(math.isnan(v) for v in row):
            raise RetryableError("answered NaN scores")
        return max(range(len(row)), key=row.__getitem__)

    def index(self, value: int) -> int:
        if not 0 <= value < self.num_classes:
            raise EndpointError(
                f"{self.url} answered label {value}, outside [0, {self.num_classes}); set "
                "endpoint.num_classes (or class_names)"
            )
        return value

    def name(self, value: str) -> int:
        if value in self.class_names:
            return self.class_names.index(value)
        if value.strip().isdigit():
            return self.index(int(value))
        if not self.class_names:
            raise EndpointError(
                f"{self.url} answered the class name {short(value)}; list the suspect's "
                "class names in label order in endpoint.class_names (--class-names)"
            )
        raise EndpointError(
            f"{self.url} answered the class name {short(value)}, which endpoint.class_names "
            "does not list"
        )


def _best(pairs: list[tuple[Any, Any]]) -> Any:
    """The label of the highest score in ``(label, score)`` pairs."""
    if not pairs or not all(_is_number(score) for _, score in pairs):
        raise RetryableError("answered a label/score mapping without numeric scores")
    return max(pairs, key=lambda pair: float(pair[1]))[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
