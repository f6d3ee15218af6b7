"""Evaluation and inference: COCO AP (faster-coco-eval), VOC mAP, error analysis, prediction.

>>> from detdistill.eval import evaluate_detections, evaluate_model, voc_map
"""

from .coco import (
    COCO_ALL_KEYS, COCO_KEYS, CocoResult, EvalInputError, check_coco_gt, check_detections, coco_evaluate,
    evaluate_detections, load_json, read_eval_files,
)
from .inference import (
    EvalResult, evaluate_model, gather_detections, outputs_to_coco, predict_dataset, score_detections,
)
from .voc import VocClassResult, VocResult, voc_ap, voc_evaluate, voc_map

__all__ = [
    "COCO_ALL_KEYS", "COCO_KEYS", "CocoResult", "EvalInputError", "EvalResult", "VocClassResult", "VocResult",
    "check_coco_gt", "check_detections", "coco_evaluate", "evaluate_detections", "evaluate_model",
    "gather_detections", "load_json", "outputs_to_coco", "predict_dataset", "read_eval_files",
    "score_detections", "voc_ap", "voc_evaluate", "voc_map",
]
