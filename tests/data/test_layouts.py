"""Layouts as people have them, each built here (PIL images, annotations written by the test) and opened:
VOC XML under other folder names or beside its images, train/ valid/ test/ exports (COCO json, YOLO, VOC),
YOLO data.yaml entries relative to path: or the yaml, the TensorFlow CSV; and the error when nothing matches."""

import json

import numpy as np
import pytest
import yaml

from detdistill.cli import main
from detdistill.data import DatasetError, detect_format, open_dataset

# (stem, class, box) per image: two classes, one box each, sizes 40x30.
ITEMS = [("a", "cat", (2, 3, 20, 25)), ("b", "dog", (5, 5, 35, 28)), ("c", "cat", (0, 0, 10, 10))]


def _voc(make, ann_dir, img_dir, suffix=".jpg", filename=True):
    for k, (stem, cls, box) in enumerate(ITEMS):
        make.image(img_dir / f"{stem}{suffix}", 40, 30, seed=k)
        ann_dir.mkdir(parents=True, exist_ok=True)
        (ann_dir / f"{stem}.xml").write_text(make.voc_xml(f"{stem}{suffix}" if filename else None, 40, 30,
                                                          [(cls, *box)]))


def _check(ds, n=3, classes=("cat", "dog")):
    assert len(ds) == n and ds.class_names == list(classes)
    by_name = {ds.image_path(i).stem: i for i in range(len(ds))}
    for stem, cls, box in ITEMS:
        if stem in by_name:
            t = ds[by_name[stem]][1]
            assert t["boxes"].tolist() == [list(map(float, box))]
            assert ds.class_names[int(t["labels"][0]) - 1] == cls


@pytest.mark.parametrize("ann,img", [("annots", "images"), ("xml", "img"), ("labels", "JPEGImages"),
                                     ("annotations", "pictures")])
def test_voc_xml_under_other_folder_names_is_detected_and_read(tmp_path, make, ann, img):
    _voc(make, tmp_path / ann, tmp_path / img)
    assert detect_format(tmp_path) == "voc"
    ds = open_dataset(tmp_path)
    _check(ds)
    assert ds.layout == f"VOC XML in {ann}/, images in {img}/"


def test_voc_xml_beside_its_images_finds_each_image_by_filename_or_stem(tmp_path, make):
    _voc(make, tmp_path, tmp_path, suffix=".png", filename=False)  # no <filename>: the stem finds the .png
    ds = open_dataset(tmp_path)
    _check(ds)
    assert ds.layout.startswith("VOC XML in ./, images beside the XML")
    # <filename> naming another suffix than the file's (labelling tools do this): the stem still finds it.
    (tmp_path / "a.xml").write_text(make.voc_xml("a.jpeg", 40, 30, [("cat", 2, 3, 20, 25)]))
    _check(open_dataset(tmp_path))


def test_named_folders_override_the_guess_and_a_missing_one_is_named(tmp_path, make):
    _voc(make, tmp_path / "boxes", tmp_path / "photos")
    _check(open_dataset(tmp_path, format="voc", annotations_dir="boxes", images_dir="photos"))
    with pytest.raises(DatasetError, match="pics: images folder not found.*data.images_dir='pics'"):
        open_dataset(tmp_path, format="voc", annotations_dir="boxes", images_dir="pics")


def _coco_split(make, folder, stems, ids_from=1):
    images, anns = [], []
    for k, (stem, cls, (x1, y1, x2, y2)) in enumerate(ITEMS):
        if stem not in stems:
            continue
        make.image(folder / f"{stem}.jpg", 40, 30, seed=k)
        images.append({"id": ids_from + k, "file_name": f"{stem}.jpg", "width": 40, "height": 30})
        anns.append({"id": ids_from + k, "image_id": ids_from + k, "category_id": 1 if cls == "cat" else 2,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": 1.0, "iscrowd": 0})
    (folder / "_annotations.coco.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))


def test_labelling_tool_export_with_a_coco_json_per_split_folder(tmp_path, make):
    _coco_split(make, tmp_path / "train", {"a", "b"})
    _coco_split(make, tmp_path / "valid", {"c"})
    assert detect_format(tmp_path) == "coco"
    train, val = open_dataset(tmp_path, "train"), open_dataset(tmp_path, "val")
    assert (len(train), len(val)) == (2, 1) and train.class_names == val.class_names == ["cat", "dog"]
    assert open_dataset(tmp_path, "valid").image_path(0) == tmp_path / "valid" / "c.jpg"
    _check(open_dataset(tmp_path))  # no split: every split folder, one dataset
    assert open_dataset(tmp_path).layout == "split folders train/, valid/ each: COCO json _annotations.coco.json"
    with pytest.raises(DatasetError, match="no folder for split 'test'.*train.*valid"):
        open_dataset(tmp_path, "test")


def test_labelling_tool_export_with_yolo_folders_per_split_and_one_class_list(tmp_path, make):
    for split, stems in (("train", "ab"), ("val", "c")):
        for k, (stem, cls, (x1, y1, x2, y2)) in enumerate(ITEMS):
            if stem in stems:
                make.image(tmp_path / split / "images" / f"{stem}.jpg", 40, 30, seed=k)
                lab = tmp_path / split / "labels" / f"{stem}.txt"
                lab.parent.mkdir(parents=True, exist_ok=True)
                cx, cy, w, h = (x1 + x2) / 80, (y1 + y2) / 60, (x2 - x1) / 40, (y2 - y1) / 30
                lab.write_text(f"{0 if cls == 'cat' else 1} {cx} {cy} {w} {h}\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    assert detect_format(tmp_path) == "yolo"
    ds = open_dataset(tmp_path, "val")
    assert ds.class_names == ["cat", "dog"] and len(ds) == 1
    np.testing.assert_allclose(ds[0][1]["boxes"].numpy(), [[0, 0, 10, 10]], atol=1e-4)
    _check(open_dataset(tmp_path))


def test_labelling_tool_export_with_voc_xml_beside_images_keeps_classes_of_every_split(tmp_path, make):
    for split, stems in (("train", "ac"), ("test", "b")):  # dog only in test/
        for k, (stem, cls, box) in enumerate(ITEMS):
            if stem in stems:
                make.image(tmp_path / split / f"{stem}.jpg", 40, 30, seed=k)
                (tmp_path / split / f"{stem}.xml").write_text(make.voc_xml(f"{stem}.jpg", 40, 30, [(cls, *box)]))
    train = open_dataset(tmp_path, "train")
    assert train.class_names == ["cat", "dog"] and len(train) == 2  # dog keeps its label though absent here
    _check(open_dataset(tmp_path))


@pytest.mark.parametrize("entry", ["../train/images", "train/images", "train.txt"])
def test_yolo_yaml_entries_relative_to_path_or_the_yaml(tmp_path, make, entry):
    root = tmp_path / "export"
    for k, (stem, cls, (x1, y1, x2, y2)) in enumerate(ITEMS):
        make.image(root / "train" / "images" / f"{stem}.jpg", 40, 30, seed=k)
        lab = root / "train" / "labels" / f"{stem}.txt"
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(f"{0 if cls == 'cat' else 1} {(x1 + x2) / 80} {(y1 + y2) / 60} {(x2 - x1) / 40} "
                       f"{(y2 - y1) / 30}\n")
    (root / "train.txt").write_text("".join(f"./train/images/{s}.jpg\n" for s, _, _ in ITEMS))
    # Roboflow writes ../train/images beside the yaml; Ultralytics reads it as train/images.
    (root / "data.yaml").write_text(yaml.safe_dump({"train": entry, "names": ["cat", "dog"], "nc": 2}))
    ds = open_dataset(root, "train")
    assert len(ds) == 3 and ds.class_names == ["cat", "dog"]
    _check(ds)
    # path: moves the base; entries are read relative to it.
    (root / "data.yaml").write_text(yaml.safe_dump({"path": "train", "train": "images", "names": ["cat", "dog"]}))
    _check(open_dataset(root, "train"))


def test_an_image_list_naming_a_missing_image_names_the_list_and_the_image(tmp_path, make):
    make.image(tmp_path / "images" / "a.jpg", 40, 30)
    (tmp_path / "train.txt").write_text("images/a.jpg\nimages/gone.jpg\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "train.txt", "names": ["cat"]}))
    with pytest.raises(DatasetError, match=r"train.txt: line 2 names image 'images/gone.jpg', which is not there"):
        open_dataset(tmp_path, "train")


def test_tensorflow_csv_per_split_with_images_in_a_sibling_folder(tmp_path, make):
    rows = {"train": ITEMS[:2], "test": ITEMS[2:]}
    for k, (stem, _, _) in enumerate(ITEMS):
        make.image(tmp_path / "images" / f"{stem}.jpg", 40, 30, seed=k)
    (tmp_path / "data").mkdir()
    for split, items in rows.items():
        lines = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
        lines += [f"{s}.jpg,40,30,{c},{b[0]},{b[1]},{b[2]},{b[3]}" for s, c, b in items]
        (tmp_path / "data" / f"{split}_labels.csv").write_text("\n".join(lines) + "\n")
    assert detect_format(tmp_path / "data") == "csv"
    train = open_dataset(tmp_path / "data", "train")
    test = open_dataset(tmp_path / "data", "test")
    assert train.class_names == test.class_names == ["cat", "dog"]  # classes of every CSV in the folder
    assert (len(train), len(test)) == (2, 1) and train.root == tmp_path / "images"
    _check(train, n=2)
    _check(test, n=1)
    _check(open_dataset(tmp_path / "data" / "train_labels.csv"), n=2)


def test_a_csv_row_with_a_bad_number_names_the_file_row_and_column(tmp_path, make):
    make.image(tmp_path / "a.jpg", 40, 30)
    (tmp_path / "labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,40,30,cat,1,x,5,5\n")
    with pytest.raises(DatasetError, match=r"labels.csv: field 'row 2 ymin' has value 'x': not a number"):
        open_dataset(tmp_path)


def test_unknown_layout_says_what_it_found_and_how_to_name_it(tmp_path, make):
    for k in range(4):  # XML files whose images are two folders down: not guessed
        make.image(tmp_path / "photos" / "deep" / f"p{k}.jpg", 40, 30, seed=k)
        (tmp_path / "annots").mkdir(exist_ok=True)
        (tmp_path / "annots" / f"p{k}.xml").write_text(make.voc_xml(f"p{k}.jpg", 40, 30, [("cat", 1, 1, 9, 9)]))
    with pytest.raises(DatasetError) as err:
        open_dataset(tmp_path)
    text = str(err.value)
    assert "4 .xml in annots/" in text and "looks like VOC XML under other names" in text
    assert "--format voc" in text and "--annotations-dir DIR --images-dir DIR" in text
    named = open_dataset(tmp_path, format="voc", annotations_dir="annots", images_dir="photos/deep")
    assert len(named) == 4 and all(named.image_path(i).is_file() for i in range(4))


def test_data_stats_prints_the_layout_line(tmp_path, make, capsys):
    _voc(make, tmp_path / "annots", tmp_path / "images")
    assert main(["data", "stats", str(tmp_path), "--out", str(tmp_path / "s.png")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "layout: VOC XML in annots/, images in images/; 3 images, 2 classes"


def build_every_layout(root, make):
    """One folder per layout of the README's table, as the tests above build them: name -> (path, split args)."""
    _voc(make, root / "voc_renamed" / "annots", root / "voc_renamed" / "images")
    _voc(make, root / "voc_beside", root / "voc_beside")
    _coco_split(make, root / "coco_export" / "train", {"a", "b"})
    _coco_split(make, root / "coco_export" / "valid", {"c"})
    for split, stems in (("train", "ab"), ("valid", "c")):
        for k, (stem, cls, (x1, y1, x2, y2)) in enumerate(ITEMS):
            if stem not in stems:
                continue
            for name in ("yolo_export", "yolo_yaml"):
                make.image(root / name / split / "images" / f"{stem}.jpg", 40, 30, seed=k)
                lab = root / name / split / "labels" / f"{stem}.txt"
                lab.parent.mkdir(parents=True, exist_ok=True)
                lab.write_text(f"{0 if cls == 'cat' else 1} {(x1 + x2) / 80} {(y1 + y2) / 60} {(x2 - x1) / 40} "
                               f"{(y2 - y1) / 30}\n")
    (root / "yolo_export" / "classes.txt").write_text("cat\ndog\n")
    (root / "yolo_yaml" / "data.yaml").write_text(yaml.safe_dump(
        {"train": "../train/images", "val": "../valid/images", "names": ["cat", "dog"], "nc": 2}))
    for k, (stem, _, _) in enumerate(ITEMS):
        make.image(root / "tf_csv" / "images" / f"{stem}.jpg", 40, 30, seed=k)
    (root / "tf_csv" / "data").mkdir(parents=True)
    for split, items in (("train", ITEMS[:2]), ("test", ITEMS[2:])):
        lines = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
        lines += [f"{s}.jpg,40,30,{c},{b[0]},{b[1]},{b[2]},{b[3]}" for s, c, b in items]
        (root / "tf_csv" / "data" / f"{split}_labels.csv").write_text("\n".join(lines) + "\n")
    return {"voc_renamed": root / "voc_renamed", "voc_beside": root / "voc_beside",
            "coco_export": root / "coco_export", "yolo_export": root / "yolo_export", "yolo_yaml": root / "yolo_yaml",
            "tf_csv": root / "tf_csv" / "data"}


def test_the_readme_layout_table_shows_what_data_stats_prints(tmp_path, make, capsys):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, path in build_every_layout(tmp_path, make).items():
        assert main(["data", "stats", str(path), "--out", str(tmp_path / "s.png")]) == 0
        line = capsys.readouterr().out.splitlines()[0]
        assert f"`{line}`" in readme, (name, line)


def test_a_voc_split_file_naming_a_missing_image_names_the_split_file_and_the_image(tmp_path, make):
    _voc(make, tmp_path / "Annotations", tmp_path / "JPEGImages")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    (tmp_path / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"Main/train.txt: id 'b' names image .*JPEGImages/b.jpg .*which is not there"):
        open_dataset(tmp_path, "train")


def test_a_roboflow_style_umbrella_category_without_boxes_is_not_a_class(tmp_path, make):
    for split, stems in (("train", {"a", "b"}), ("valid", {"c"})):
        _coco_split(make, tmp_path / split, stems)
        path = tmp_path / split / "_annotations.coco.json"
        doc = json.loads(path.read_text())
        doc["categories"] = [{"id": 0, "name": "pets", "supercategory": "none"},
                             {"id": 1, "name": "cat", "supercategory": "pets"},
                             {"id": 2, "name": "dog", "supercategory": "pets"}]
        path.write_text(json.dumps(doc))
    train = open_dataset(tmp_path, "train")
    assert train.class_names == ["cat", "dog"] and train.category_ids == [1, 2]
    assert train.skips.counts["supercategory_dropped"] == 1 and "'pets', id 0" in train.skips.examples[
        "supercategory_dropped"][0]
    _check(open_dataset(tmp_path))
