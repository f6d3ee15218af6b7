"""Logged keys get titles in words and a panel group, known or not (the term registry adds keys over time)."""

from detdistill.reports.terms import GROUPS, TITLES, describe_key, plotted_keys


def test_known_keys_are_titled_in_words():
    assert describe_key("kd/rcn_bound_active") == ("diagnostics",
                                                   "share of positive RoIs where the teacher bound is active")
    assert describe_key("loss_classifier")[0] == "detection"
    assert describe_key("kd/rcn_soft") == ("distillation", "box classification against the teacher's soft labels")
    for key, (group, title) in TITLES.items():
        assert "/" not in title and "_" not in title, (key, title)
        assert group in GROUPS or group == "validation"


def test_unknown_keys_get_a_readable_title_and_a_group_from_their_name():
    group, title = describe_key("kd/rcn_feature_kl")
    assert group == "distillation"
    assert title.startswith("box head feature KL") and "(kd/rcn_feature_kl)" in title
    assert describe_key("kd/roi_mask_fraction")[0] == "diagnostics"
    assert describe_key("loss_attention") == ("distillation", "attention loss (loss_attention)")
    assert describe_key("throughput")[0] == "diagnostics"


def test_plotted_keys_put_known_keys_first_in_the_listed_order_and_skip_bookkeeping():
    keys = {"kd/zeta", "loss_box_reg", "loss", "loss_objectness", "lr", "epoch", "grad_norm", "kd/alpha"}
    assert plotted_keys(keys) == ["loss", "loss_objectness", "loss_box_reg", "grad_norm", "kd/alpha", "kd/zeta"]
