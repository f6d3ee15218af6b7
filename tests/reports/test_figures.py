"""The soft-label example is one where the teacher is right and its runner-up is the look-alike class."""

import torch

from detdistill.data.synthetic import LOOKALIKE_PAIRS, SyntheticShapes
from detdistill.reports import figures


def test_pick_lookalike_examples_needs_the_teacher_right_and_its_runner_up_the_lookalike(monkeypatch, tmp_path):
    data = SyntheticShapes("test", num_images=3, seed=0)
    names = list(data.class_names)

    def fake_soft_labels(teacher, image, boxes, labels):  # noqa: ANN001, ANN202
        rows = []
        for label in labels:
            p = torch.full((len(names) + 1,), 0.01)
            true_name = names[label - 1]
            partner = dict(LOOKALIKE_PAIRS) | {b: a for a, b in LOOKALIKE_PAIRS}
            strength = float(image.mean())  # differs per image, so the best example is well defined
            p[label] = 0.6
            p[names.index(partner[true_name]) + 1] = 0.1 + 0.2 * strength
            if true_name == "square":  # the teacher is wrong on squares: they must never be picked
                p[label], p[0] = 0.05, 0.7
            rows.append(p / p.sum())
        return torch.stack(rows)

    monkeypatch.setattr(figures, "teacher_soft_labels", fake_soft_labels)
    examples = figures.pick_lookalike_examples(None, data, LOOKALIKE_PAIRS)
    assert examples and all(ex["strict"] for ex in examples)
    assert "square" not in {ex["true"] for ex in examples} and "wide_rectangle" in {ex["true"] for ex in examples}
    for ex in examples:
        probs = torch.tensor(ex["probs"])
        assert int(probs.argmax()) == names.index(ex["true"]) + 1
        assert names[int(probs[1:].topk(2).indices[1])] == ex["lookalike"]
        assert {ex["true"], ex["lookalike"]} in [set(p) for p in LOOKALIKE_PAIRS]
    # Largest runner-up per pair: the fake teacher's runner-up grows with the image's mean intensity.
    with_rect = [i for i in range(3) if names.index("wide_rectangle") + 1 in data.get_target(i)["labels"].tolist()]
    rect = next(ex for ex in examples if ex["true"] == "wide_rectangle")
    assert rect["index"] == max(with_rect, key=lambda i: float(data.load_image(i).mean()))
    assert figures.soft_label_figure(examples, names, tmp_path / "soft.png").stat().st_size > 0


def test_loss_panels_group_keys_and_skip_an_empty_group(tmp_path):
    import json

    metrics = tmp_path / "m.jsonl"
    metrics.write_text("\n".join(json.dumps({"step": s, "kind": "train", "loss_classifier": 1.0 / s,
                                             "kd/new_term": 0.5, "kd/rcn_bound_active": 0.3}) for s in range(1, 6)))
    assert figures.loss_panels({"distilled": metrics}, tmp_path / "d.png", "distillation").is_file()
    assert figures.loss_panels({"baseline": metrics}, tmp_path / "x.png", "nonexistent") is None
    curves = tmp_path / "v.jsonl"
    curves.write_text("\n".join(json.dumps({"step": s, "kind": "val", "val/mAP50": 0.1 * s}) for s in range(1, 6)))
    assert figures.validation_curves({"baseline": curves, "distilled": curves}, tmp_path / "v.png").is_file()
