"""Files and folders of the server that a reader names: an upload opens only a file Gradio stored from the
page, and a tuning worklist opens a server folder only under the roots an administrator offers."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from anomascope.app.review import worklists
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import markdown_text
from anomascope.app.review.session import ReviewError
from anomascope.app.review.tuning_session import TuningService
from anomascope.app.review.uploads import uploaded
from anomascope.app.review.worklists import ROOTS_ENV, worklist_roots
from anomascope.storage import Case
from tests.app.test_accounts import ROOT, SAMPLE, _served

DICOM = ROOT / "assets" / "samples" / "CT_small.dcm"
REFUSED = "was not uploaded through this page; only files uploaded here are opened"


def test_only_files_in_the_upload_cache_are_taken(tmp_path):
    cache = tmp_path / "gradio"
    (cache / "0a1b").mkdir(parents=True)
    inside = cache / "0a1b" / "case.jpg"
    shutil.copy(SAMPLE, inside)
    assert uploaded(str(inside), cache) == inside
    (tmp_path / "cache-link").symlink_to(cache)  # the cache named through a link (/tmp on macOS) is the cache
    assert uploaded(str(tmp_path / "cache-link" / "0a1b" / "case.jpg"), tmp_path / "cache-link") == inside
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(SAMPLE, outside)
    (cache / "0a1b" / "link.jpg").symlink_to(outside)
    (tmp_path / "gradio-other").mkdir()
    for forged in (
        outside,
        cache / "0a1b" / "link.jpg",  # a link inside the cache to a file outside it
        cache / "0a1b" / ".." / ".." / "elsewhere.jpg",
        cache,  # the cache itself is no upload
        tmp_path / "gradio-other" / "x.jpg",  # a sibling whose name starts like the cache's
        Path("/etc/passwd"),
    ):
        with pytest.raises(ReviewError, match=REFUSED):
            uploaded(str(forged), cache)


def _queue(url: str, dep: dict, data: list, event_data: dict | None = None) -> dict:
    """The completed event of dependency `dep` sent to Gradio's queue with `data`, as a client may send it."""
    session = uuid.uuid4().hex
    joined = httpx.post(
        f"{url}/gradio_api/queue/join",
        json={"data": data, "fn_index": dep["id"], "session_hash": session, "event_data": event_data},
    )
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=120) as stream:
        for line in stream.iter_lines():
            event = json.loads(line.removeprefix("data:")) if line.startswith("data:") else {}
            if event.get("msg") == "process_completed":
                return event
    raise AssertionError("the queue closed before the event completed")


def _event(url: str, elem_id: str, value) -> tuple[bool, str]:
    """The page's event on the component `elem_id` with `value` (forged or not): whether it ran, and what the
    page's message says (Gradio's error where Gradio refused the value itself)."""
    config = httpx.get(f"{url}/config").json()
    ids = {c["id"]: c["props"].get("elem_id") for c in config["components"]}
    [dep] = [d for d in config["dependencies"] if any(ids.get(target) == elem_id for target, _ in d["targets"])]
    event = _queue(url, dep, [value if ids[i] == elem_id else None for i in dep["inputs"]])
    if not event["success"]:
        return False, event["output"]["error"]
    outputs = dict(zip((ids[i] for i in dep["outputs"]), event["output"]["data"], strict=True))
    return True, outputs["message"]


def _demo_case(url: str, name: str) -> dict:
    """What the page puts in the upload box when the reader clicks the demo case `name`."""
    config = httpx.get(f"{url}/config").json()
    [examples] = [c for c in config["components"] if c["type"] == "dataset"]
    index = examples["props"]["samples"].index([name])
    [dep] = [d for d in config["dependencies"] if any(target == examples["id"] for target, _ in d["targets"])]
    [update] = _queue(url, dep, [index], {"index": index, "value": [name]})["output"]["data"]
    return update["value"]


def _file(path: Path | str) -> dict:
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def _cases(app: ReviewApp) -> list[Case]:
    with app.db.sessions() as session:
        return session.scalars(select(Case)).all()


@pytest.fixture
def page(tmp_path, monkeypatch):
    url, app, demo = _served(tmp_path, monkeypatch, accounts=False)
    yield url, app
    demo.close()


def test_a_forged_upload_path_is_refused_and_nothing_of_it_is_read(page, tmp_path):
    url, app = page
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Gradio refuses most paths outside its cache itself, but lets those under the page's static folders (the
    # viewer's scene volumes) through unchecked: the page must refuse them.
    scene = app.volumes.root / "another-readers-scene"
    scene.mkdir()
    for folder in (elsewhere, scene):
        shutil.copy(SAMPLE, folder / SAMPLE.name)
        shutil.copy(DICOM, folder / DICOM.name)
    gradio_refuses = [
        ("upload", _file(elsewhere / SAMPLE.name)),
        ("upload", _file("/etc/passwd")),
        ("upload", _file(tmp_path / "accounts.sqlite")),
        ("folder", [_file(elsewhere / DICOM.name)]),
    ]
    for elem_id, value in gradio_refuses:
        ran, said = _event(url, elem_id, value)
        assert REFUSED in said if ran else "not uploaded by a user" in said, (elem_id, value, said)
    for elem_id, value, name in (
        ("upload", _file(scene / SAMPLE.name), SAMPLE.name),
        ("folder", [_file(scene / DICOM.name)], DICOM.name),
    ):
        assert _event(url, elem_id, value) == (True, f"⚠️ {markdown_text(name)} {REFUSED}")
    assert _cases(app) == []
    assert not app.cases_dir.exists() or not any(app.cases_dir.rglob("*"))  # nothing copied into the case store

    # What the page itself uploads opens: a file sent through Gradio's upload, and a demo case.
    [stored] = httpx.post(f"{url}/gradio_api/upload", files={"files": (SAMPLE.name, SAMPLE.read_bytes())}).json()
    ran, said = _event(url, "upload", _file(stored))
    assert ran and said.startswith(f"Opened **{SAMPLE.name}**"), said
    ran, said = _event(url, "upload", _demo_case(url, DICOM.name))
    assert ran and said.startswith(f"Opened **{DICOM.name}**"), said
    assert len(_cases(app)) == 2


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(SAMPLE, path / SAMPLE.name)
    return path


def test_a_worklist_folder_opens_only_under_the_offered_roots(app, tmp_path, monkeypatch):
    label = next(iter(app.catalogue.choices))
    offered = _folder(tmp_path / "offered" / "site-a")
    scratch = _folder(tmp_path / "scratch")
    (offered.parent / "link").symlink_to(scratch)
    listed = []
    list_images = worklists.list_images
    monkeypatch.setattr(worklists, "list_images", lambda folder: listed.append(folder) or list_images(folder))

    for folder in (scratch, offered):  # no roots by default: no server folder is offered
        with pytest.raises(ReviewError, match=re.escape(f"{folder}: server folders are not offered")) as refused:
            TuningService(app).start(str(folder), label, "dr lead")
        assert ROOTS_ENV in str(refused.value)
    service = TuningService(app, folder_roots=[tmp_path / "offered"])
    for folder in (scratch, offered.parent / "link", offered / ".." / ".." / "scratch", tmp_path / "offered-not"):
        with pytest.raises(ReviewError, match=re.escape(f"{folder}: not under the server folders offered")) as refused:
            service.start(str(folder), label, "dr lead")
        assert str(tmp_path / "offered") in str(refused.value) and ROOTS_ENV in str(refused.value)
    assert listed == []  # nothing under a refused folder was read

    assert [case.name for case in service.start(str(offered), label, "dr lead").cases] == [SAMPLE.name]
    root_itself = TuningService(app, folder_roots=[offered])
    assert [case.name for case in root_itself.start(str(offered), label, "dr lead").cases] == [SAMPLE.name]
    # The database and the PACS are no server folders: they stay offered without roots.
    app.open_file(SAMPLE, "dr lead")
    assert len(TuningService(app).start("database", label, "dr lead").cases) == 1
    with pytest.raises(ReviewError, match="no PACS is configured"):
        TuningService(app).start("dicomweb: Doe", label, "dr lead")


def test_the_roots_come_from_the_environment_and_the_page_names_them(app, tmp_path, monkeypatch):
    from anomascope.app.page.layout import build_app

    def info() -> str:
        [box] = [c for c in build_app(app).config["components"] if c["props"].get("elem_id") == "tuning-source"]
        return box["props"]["info"]

    monkeypatch.delenv(ROOTS_ENV, raising=False)
    assert worklist_roots() == ()
    assert info() == f"No server folders are offered: an administrator lists them in {ROOTS_ENV}."
    monkeypatch.setenv(ROOTS_ENV, f"{tmp_path / 'a'}{os.pathsep}{os.pathsep}{tmp_path / 'b'}")
    assert worklist_roots() == (tmp_path / "a", tmp_path / "b")
    assert info() == f"Server folders under: {tmp_path / 'a'}, {tmp_path / 'b'}."


def test_a_link_in_an_offered_folder_cannot_lead_out_of_it(tmp_path):
    offered, elsewhere = tmp_path / "offered", tmp_path / "elsewhere"
    offered.mkdir()
    elsewhere.mkdir()
    shutil.copy(SAMPLE, elsewhere / "private.jpg")
    shutil.copy(SAMPLE, offered / "mine.jpg")
    (offered / "private.jpg").symlink_to(elsewhere / "private.jpg")
    with pytest.raises(ReviewError, match="private.jpg: a link out of the worklist folder"):
        worklists.worklist(str(offered), None, [offered])  # type: ignore[arg-type]
