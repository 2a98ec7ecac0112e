"""YouTube-VIS evaluation: official-rule metrics (:func:`evaluate_ytvis`), the detectron2 evaluator
(:class:`YTVISEvaluator`) and a CLI (``python -m projects.evaluation GT.json RESULTS.json``)."""

from .ytvis_eval import evaluate_ytvis, video_iou

__all__ = ["YTVISEvaluator", "evaluate_ytvis", "video_iou"]


def __getattr__(name: str):
    # Imported lazily so the CLI and evaluate_ytvis do not pay for importing torch/detectron2.
    if name == "YTVISEvaluator":
        from .evaluator import YTVISEvaluator

        return YTVISEvaluator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
