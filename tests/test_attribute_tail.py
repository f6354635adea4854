"""An attribute tail beside the room network (attribute_tail.py, tools/build_attribute_tail.py):
the combined graph computes the room network's outputs to the bit and the donor's embedding from
the shared blocks, attribute heads read it, and the tagger, train-attribute and explain follow."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from estatelens.attribute_tail import combine, default_cut
from estatelens.attributes import ATTRIBUTE_EMBEDDING_OUTPUT, EMBEDDING_OUTPUT
from estatelens.bundle import load_bundle, onnx_session
from estatelens.cli import main

from conftest import SHARED_DATA, has_shared_data, stripes
from test_attributes import dim, make_dim_folder, read_csv_rows

ROOT = Path(__file__).resolve().parents[1]
LAST_BLOCK = 6  # RoomNet's blocks are features.0 .. features.6


def perturbed_donor(base: Path, dest: Path) -> Path:
    """The base bundle's network with its last block changed (as fine-tuning would change it),
    saved as a bundle of its own."""
    import torch

    from estatelens.bundle import save_bundle
    from estatelens.models.registry import create_model

    b = load_bundle(base)
    net = create_model(b.info["model"], num_classes=len(b.classes), pretrained=False)
    net.load_state_dict(b.weights("for the test"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if f"features.{LAST_BLOCK}." in name and p.ndim == 4:
                p.mul_(-0.5).add_(0.1 * torch.randn(p.shape, generator=g))
    return save_bundle(dest, net.eval(), b.classes, b.preprocessing, {"model": b.info["model"], "mode": "finetune"}).path


@pytest.fixture(scope="module")
def tail_bundles(tmp_path_factory, stripes_bundle) -> tuple[Path, Path, Path]:
    """(base, donor, combined), the combined one built by the tool."""
    root = tmp_path_factory.mktemp("tail")
    donor = perturbed_donor(stripes_bundle, root / "donor")
    out = root / "combined.estatelens"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_attribute_tail.py"), str(stripes_bundle), str(donor),
                    str(out)], check=True, capture_output=True, text=True)
    return stripes_bundle, donor, out


def batch(n: int = 6, size: int = 64) -> np.ndarray:
    return np.random.default_rng(1).uniform(-2, 2, (n, 3, size, size)).astype(np.float32)


def teach_dim(tmp_path: Path, model: Path, *options: str) -> Path:
    """A copy of `model` with the attribute "dim" trained on it (test_attributes' tiny folder)."""
    data = make_dim_folder(tmp_path / "data")
    taught = tmp_path / "taught.estatelens"
    assert main(["train-attribute", "dim", str(data), "--model", str(model), "--out", str(taught), "--views", "1",
                 *options, "--report", str(tmp_path / "report"), "--quiet"]) == 0
    return taught


def test_combined_graph_keeps_the_room_network_and_computes_the_donors_embedding(tail_bundles):
    base, donor, out = tail_bundles
    x = batch()
    a, b, d = (onnx_session(p / "model.onnx") for p in (out, base, donor))
    got = dict(zip(["output", EMBEDDING_OUTPUT, ATTRIBUTE_EMBEDDING_OUTPUT],
                   a.run(["output", EMBEDDING_OUTPUT, ATTRIBUTE_EMBEDDING_OUTPUT], {"image": x})))
    room_p, room_e = b.run(["output", EMBEDDING_OUTPUT], {"image": x})
    (donor_e,) = d.run([EMBEDDING_OUTPUT], {"image": x})
    assert np.array_equal(got["output"], room_p) and np.array_equal(got[EMBEDDING_OUTPUT], room_e)
    np.testing.assert_allclose(got[ATTRIBUTE_EMBEDDING_OUTPUT], donor_e, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[ATTRIBUTE_EMBEDDING_OUTPUT], room_e, atol=1e-3)  # the tail is the donor's, not a copy
    info = load_bundle(out).info["attribute_tail"]
    assert info["first_block"] == LAST_BLOCK and info["cut"] == "/backbone/features/features.5/Add_output_0"


def test_room_types_can_come_from_both_tails(tmp_path, tail_bundles):
    """--room-average W: the room-type probabilities are (1 - W) x the room network's plus W x the
    donor's own head on the tail; the embeddings stay as they were, and averaging twice is refused."""
    from estatelens.attribute_tail import average_room_outputs

    base, donor, _ = tail_bundles
    out = tmp_path / "averaged.estatelens"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_attribute_tail.py"), str(base), str(donor), str(out),
                    "--room-average", "0.3"], check=True, capture_output=True, text=True)
    x = batch()
    a, b, d = (onnx_session(p / "model.onnx") for p in (out, base, donor))
    got, emb, tail_emb = a.run(["output", EMBEDDING_OUTPUT, ATTRIBUTE_EMBEDDING_OUTPUT], {"image": x})
    own, own_emb = b.run(["output", EMBEDDING_OUTPUT], {"image": x})
    donor_p, donor_e = d.run(["output", EMBEDDING_OUTPUT], {"image": x})
    assert not np.allclose(own, donor_p, atol=1e-3)  # the two heads disagree, so the average shows
    np.testing.assert_allclose(got, 0.7 * own + 0.3 * donor_p, atol=1e-5)
    assert np.array_equal(emb, own_emb)
    np.testing.assert_allclose(tail_emb, donor_e, rtol=1e-5, atol=1e-5)
    assert load_bundle(out).info["attribute_tail"]["room_average"] == 0.3
    with pytest.raises(ValueError, match="already averaged"):
        average_room_outputs(out / "model.onnx", donor / "model.onnx", tmp_path / "twice.onnx")


def test_a_cut_the_tail_cannot_start_from_is_refused(tmp_path, tail_bundles):
    import onnx

    base, donor, _ = tail_bundles
    assert default_cut(onnx.load(str(donor / "model.onnx")).graph, LAST_BLOCK) == "/backbone/features/features.5/Add_output_0"
    # inside the last block: its shortcut still reads the block before, from the shared part
    inside = "/backbone/features/features.6/body/body.0/body.0.2/Relu_output_0"
    with pytest.raises(ValueError, match="reads the graph input image other than through"):
        combine(base / "model.onnx", donor / "model.onnx", inside, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="has no tensor"):
        combine(base / "model.onnx", donor / "model.onnx", "no/such/tensor", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_the_tail_starts_where_the_weights_first_differ_and_nothing_before_may_differ():
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from build_attribute_tail import first_trained_block

    base = {"backbone.net._conv_stem.weight": torch.ones(2), "backbone.net._blocks.14._dw.weight": torch.ones(2),
            "backbone.net._blocks.15._dw.weight": torch.ones(2), "backbone.net._conv_head.weight": torch.ones(2),
            "head.1.weight": torch.ones(2)}
    donor = {**base, "backbone.net._blocks.15._dw.weight": torch.zeros(2), "head.1.weight": torch.zeros(2),
             "backbone.net._conv_head.weight": torch.zeros(2), "attribute_head.weight": torch.ones(3)}
    assert first_trained_block(base, donor) == 15
    with pytest.raises(ValueError, match="differ before block 15: backbone.net._conv_stem.weight"):
        first_trained_block(base, {**donor, "backbone.net._conv_stem.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="differ in no block"):
        first_trained_block(base, base)
    with pytest.raises(ValueError, match="DONOR lacks head.1.weight"):
        first_trained_block(base, {k: v for k, v in donor.items() if k != "head.1.weight"})


def test_heads_read_the_tail_and_the_tagger_and_explain_follow(tmp_path, tail_bundles, capsys):
    base, donor, out = tail_bundles
    taught = teach_dim(tmp_path, out)
    head = load_bundle(taught).attributes[0]
    assert head.embedding == ATTRIBUTE_EMBEDDING_OUTPUT  # the default where the graph has a tail
    assert json.loads((taught / "attributes" / "dim.json").read_text())["embedding"] == ATTRIBUTE_EMBEDDING_OUTPUT

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        dim(stripes(("vertical", "horizontal")[i % 2], 80, seed=700 + i)).save(photos / f"d{i}.jpg")
        stripes(("vertical", "horizontal")[i % 2], 80, seed=800 + i).save(photos / f"b{i}.jpg")
    tags, plain = tmp_path / "tags.csv", tmp_path / "plain.csv"
    assert main(["tag", str(photos), "--model", str(taught), "--out", str(tags), "--quiet"]) == 0
    assert main(["tag", str(photos), "--model", str(base), "--out", str(plain), "--quiet"]) == 0
    rows, before = read_csv_rows(tags), {r["path"]: r for r in read_csv_rows(plain)}
    # room types are the room network's; the attribute is the head on the donor's embedding
    from estatelens.data.preprocess import decode_side
    from estatelens.inference import load_photo

    b = load_bundle(taught)
    d = onnx_session(donor / "model.onnx")
    for r in rows:
        assert (r["room_type"], r["probability"]) == (before[r["path"]]["room_type"], before[r["path"]]["probability"])
        x = load_photo(r["path"], b.preprocessing, decode_side(b.preprocessing)).x
        (e,) = d.run([EMBEDDING_OUTPUT], {"image": x[None]})
        assert float(r["dim_probability"]) == pytest.approx(float(head.probability(e)[0]), abs=2e-4)
    # the head reads an output the room network's weights.pt cannot explain: Grad-CAM leaves it out,
    # and says so
    from estatelens.explain import Explainer

    assert Explainer(b).heads == {}
    capsys.readouterr()
    assert main(["explain", rows[0]["path"], "--model", str(taught), "--out", str(tmp_path / "maps"),
                 "--every-attribute"]) == 0
    out = capsys.readouterr()
    assert "no heatmap for dim" in out.err and "room_type" not in out.err
    assert len(list((tmp_path / "maps").iterdir())) == 1  # the room type's overlay only


def test_a_head_on_an_output_the_graph_lacks_is_refused(tmp_path, tail_bundles):
    _, _, out = tail_bundles
    taught = teach_dim(tmp_path, out, "--embedding", EMBEDDING_OUTPUT)
    assert load_bundle(taught).attributes[0].embedding == EMBEDDING_OUTPUT  # asked for: the room embedding
    f = taught / "attributes" / "dim.json"
    head = json.loads(f.read_text())
    head["embedding"] = "no_such_output"
    f.write_text(json.dumps(head))
    with pytest.raises(ValueError, match="reads the graph output 'no_such_output'"):
        load_bundle(taught).attributes


def test_the_web_app_offers_no_heatmap_for_a_head_on_the_tail(tmp_path, tail_bundles):
    from starlette.testclient import TestClient

    from estatelens.web import create_app

    _, _, out = tail_bundles
    taught = teach_dim(tmp_path, out)
    photos = tmp_path / "photos"
    photos.mkdir()
    stripes("vertical", 80, seed=5).save(photos / "a.jpg")
    assert main(["index", str(photos), "--model", str(taught), "--db", str(tmp_path / "x.db"), "--quiet"]) == 0
    with TestClient(create_app(str(tmp_path / "x.db"), model=str(taught), token="t" * 12)) as c:
        assert c.get("/api/health").json()["heatmaps"] == ["room_type"]
        photo = c.get("/api/search").json()["results"][0]
        assert "dim" in photo["attributes"]  # tagged with the tail's head
        assert c.get(f"/api/photos/{photo['id']}/heatmap/dim").status_code in (404, 422)


@pytest.mark.skipif(not has_shared_data(), reason="../shared/data is not here")
def test_the_bundled_rooms_attributes_keeps_the_room_types_and_finds_fireplaces(tmp_path):
    """The opt-in bundle (tools/build_attribute_model.sh): room types exactly as `rooms` says them,
    fireplace from the tail, ranked better than `rooms` ranks it on the labelled rooms-web test
    living rooms (none of which the tail or its heads learnt from)."""
    from sklearn.metrics import average_precision_score

    rooms, tail = load_bundle("rooms"), load_bundle("rooms-attributes")
    assert tail.classes == rooms.classes and tail.info["weights_from"]["bundle"] == "rooms.estatelens"
    heads = {h.name: h for h in tail.attributes}
    assert sorted(heads) == ["balcony", "empty", "fireplace"]
    assert heads["fireplace"].embedding == heads["balcony"].embedding == ATTRIBUTE_EMBEDDING_OUTPUT
    # empty reads the room network's embedding, as in `rooms` (the tail never learnt it): the same head
    empty = {h.name: h for h in rooms.attributes}["empty"]
    assert heads["empty"].embedding == empty.embedding == "embedding" and heads["empty"].threshold == empty.threshold
    assert 0 < heads["fireplace"].threshold < 1
    from estatelens.data.attribute_labels import read_attribute_labels

    samples = read_attribute_labels(SHARED_DATA / "attributes.csv", "fireplace").samples
    labels = {Path(s.path): s.label == "yes" for s in samples if s.split == "test" and "/rooms-web/test/" in s.path}
    assert len(labels) >= 100 and sum(labels.values()) >= 15
    rows = {}
    for model in ("rooms", "rooms-attributes"):
        out = tmp_path / f"{model}.csv"
        assert main(["tag", *map(str, labels), "--model", model, "--out", str(out), "--quiet"]) == 0
        rows[model] = {r["path"]: r for r in read_csv_rows(out)}
    for p, r in rows["rooms"].items():
        assert (r["room_type"], r["probability"]) == (rows["rooms-attributes"][p]["room_type"],
                                                       rows["rooms-attributes"][p]["probability"])
    y = [labels[Path(p)] for p in rows["rooms"]]
    ap = {m: average_precision_score(y, [float(r["fireplace_probability"]) for r in rows[m].values()]) for m in rows}
    assert ap["rooms-attributes"] >= 0.8 and ap["rooms-attributes"] > ap["rooms"] + 0.1, ap
