"""A PACS over DICOMweb, through dicomweb-client: search studies (QIDO-RS), fetch a series to score
(WADO-RS), and send derived objects back (STOW-RS).

The server's address comes from `serve --dicomweb URL` or ANOMASCOPE_DICOMWEB_URL; credentials only from
the environment (ANOMASCOPE_DICOMWEB_USER and ANOMASCOPE_DICOMWEB_PASSWORD, or ANOMASCOPE_DICOMWEB_TOKEN
for a bearer token), never from the command line, where every user of the machine can read them. Every
failure is a `PacsError` whose message is one sentence a reader can act on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

URL_VARIABLE = "ANOMASCOPE_DICOMWEB_URL"
USER_VARIABLE = "ANOMASCOPE_DICOMWEB_USER"
PASSWORD_VARIABLE = "ANOMASCOPE_DICOMWEB_PASSWORD"
TOKEN_VARIABLE = "ANOMASCOPE_DICOMWEB_TOKEN"
STUDY_LIMIT = 50
# Objects that hold no image to score, though some carry pixel data: the derived objects this app
# writes itself, and the reports and states that viewers store beside images.
NOT_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a Segmentation",
    "1.2.840.10008.5.1.4.1.1.30": "a Parametric Map",
    "1.2.840.10008.5.1.4.1.1.481.3": "an RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.104.1": "an encapsulated PDF",
}
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Series modalities that never hold an image to score (a Parametric Map takes its source's modality).
NOT_IMAGE_MODALITIES = {"SEG", "PR", "SR", "KO", "DOC", "RTSTRUCT"}


class PacsError(Exception):
    """Talking to the PACS failed; the message says what, in one sentence. `stored`: the SOP Instance UIDs
    the PACS did take before it refused the rest."""

    def __init__(self, message: str, stored: list[str] | None = None):
        super().__init__(message)
        self.stored = stored or []


class NotAnImageSeries(PacsError):
    """The series holds no image to score: a Segmentation or Parametric Map, a report, a structure set."""


@dataclass(frozen=True)
class Study:
    study_uid: str
    patient_name: str
    patient_id: str
    date: str
    description: str
    modalities: str
    accession: str


@dataclass(frozen=True)
class Series:
    series_uid: str
    modality: str
    number: str
    description: str
    instances: str

    @property
    def may_hold_images(self) -> bool:
        return self.modality.upper() not in NOT_IMAGE_MODALITIES

    @property
    def title(self) -> str:
        """How the page lists the series."""
        text = f"{self.modality or '?'} series {self.number or '?'}"
        text += f": {self.description}" if self.description else ""
        return text + (f" ({self.instances} instances)" if self.instances else "")


class LiteralWildcards(requests.Session):
    """A session that sends QIDO's `*` wildcard as it is: it is legal in a query string, and Orthanc's
    DICOMweb plugin (1.7, Debian 12) does not decode the `%2A` that dicomweb-client writes, so a search for
    `Smith*` would find nothing there."""

    def send(self, request, **kwargs):
        request.url = request.url.replace("%2A", "*")
        return super().send(request, **kwargs)


class Pacs:
    def __init__(self, url: str, username: str | None = None, password: str | None = None, token: str | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PacsError(f"the DICOMweb address {url!r} is not an http:// or https:// URL")
        if parts.username or parts.password:
            raise PacsError(
                f"the DICOMweb address must not hold credentials, which anyone on this machine could read; "
                f"set {USER_VARIABLE} and {PASSWORD_VARIABLE} (or {TOKEN_VARIABLE}) instead"
            )
        self.url = url.rstrip("/")
        session = LiteralWildcards()
        # Secrets mounted from files often end in a newline; a header that holds one would be refused by
        # requests with the secret in its message.
        token, username, password = (v.strip() if v else v for v in (token, username, password))
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif username:
            session.auth = (username, password or "")
        self.client = DICOMwebClient(self.url, session=session)

    @classmethod
    def from_environment(cls, url: str | None = None, environ: Mapping[str, str] = os.environ) -> Pacs | None:
        """The PACS at `url`, or at ANOMASCOPE_DICOMWEB_URL; None when neither names one."""
        url = url or environ.get(URL_VARIABLE)
        if not url:
            return None
        return cls(
            url,
            username=environ.get(USER_VARIABLE),
            password=environ.get(PASSWORD_VARIABLE),
            token=environ.get(TOKEN_VARIABLE),
        )

    def studies(self, text: str = "", limit: int = STUDY_LIMIT) -> list[Study]:
        """Studies whose patient name holds the words of `text` in order (any case, as the PACS matches
        names), or whose patient ID or accession number starts with it, newest first; with `text` empty,
        any `limit` studies."""
        text = text.strip().replace("*", "")
        if not text:
            searches: list[dict] = [{}]
        else:
            # A name is stored as Family^Given: each typed word matches in order, across the separators.
            name = "*".join(text.split())
            searches = [{"PatientName": f"*{name}*"}, {"PatientID": f"{text}*"}, {"AccessionNumber": f"{text}*"}]
        found: dict[str, Study] = {}
        for filters in searches:
            # The PACS returns at most `limit` a search (QIDO has no standard order, so not the newest).
            answered = self._call(
                "search the studies", self.client.search_for_studies, search_filters=filters, limit=limit
            )
            for item in answered:
                study = _study(pydicom.Dataset.from_json(item))
                found.setdefault(study.study_uid, study)
        return sorted(found.values(), key=lambda s: s.date, reverse=True)[:limit]

    def series(self, study_uid: str) -> list[Series]:
        items = self._call(f"list the series of study {study_uid}", self.client.search_for_series, study_uid)
        found = [_series(pydicom.Dataset.from_json(item)) for item in items]
        return sorted(found, key=lambda s: (_number(s.number), s.series_uid))

    def holds_images(self, series: Series, study_uid: str) -> bool:
        """Whether the series may hold images to score, told without fetching it: by its modality, then by
        the SOP class of one of its instances (a Parametric Map carries its source's modality)."""
        if not series.may_hold_images:
            return False
        items = self._call(
            f"list the instances of series {series.series_uid}",
            self.client.search_for_instances,
            study_uid,
            series.series_uid,
            fields=["00080016"],
            limit=1,
        )
        return not items or str(pydicom.Dataset.from_json(items[0]).get("SOPClassUID", "")) not in NOT_IMAGES

    def fetch_series(self, study_uid: str, series_uid: str, folder: Path) -> Path:
        """The series' instances written into `folder` as files; the path to open: the one file of a
        single-instance series (a slice, or a multi-frame object), else the folder. Refused when they
        hold no image."""
        datasets = self._call(f"fetch series {series_uid}", self.client.retrieve_series, study_uid, series_uid)
        if not datasets:
            raise PacsError(f"series {series_uid} of study {study_uid} holds no instances on {self.url}")
        for ds in datasets:
            refused = _not_an_image(ds)
            if refused:
                raise NotAnImageSeries(
                    f"series {series_uid} holds {refused}, not images to score; open an image series"
                )
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{index:05d}.dcm" for index in range(len(datasets))]  # never a name the PACS chose
        for ds, path in zip(datasets, paths, strict=True):
            ds.save_as(path, enforce_file_format=True)
        return paths[0] if len(paths) == 1 else folder

    def store(self, paths: list[Path]) -> list[str]:
        """Send the DICOM files at `paths` (STOW-RS); their SOP Instance UIDs once the PACS confirmed every
        one. A PACS may fail objects in its reply, or leave them out of it (Orthanc does, for an object
        without a study): both are refusals."""
        datasets = [pydicom.dcmread(path) for path in paths]
        reply = self._call("store the objects", self.client.store_instances, datasets)
        failed = [
            f"{item.get('ReferencedSOPInstanceUID', '?')} (failure reason {item.get('FailureReason', '?')})"
            for item in reply.get("FailedSOPSequence") or []
        ]
        confirmed = {str(item.ReferencedSOPInstanceUID) for item in reply.get("ReferencedSOPSequence") or []}
        sent = [str(ds.get("SOPInstanceUID", "")) for ds in datasets]
        unconfirmed = [uid or "an object without a SOP Instance UID" for uid in sent if uid not in confirmed]
        if failed or unconfirmed:
            said = "; ".join(failed + [uid for uid in unconfirmed if not any(uid in f for f in failed)])
            raise PacsError(
                f"the PACS at {self.url} did not store {len(unconfirmed)} of the {len(sent)} objects sent: {said}",
                stored=[uid for uid in sent if uid in confirmed],
            )
        return sent

    def _call(self, doing: str, function, *args, **kwargs):
        """`function(*args, **kwargs)`, its failures said in one sentence."""
        try:
            return function(*args, **kwargs)
        except requests.exceptions.HTTPError as exc:
            raise PacsError(f"could not {doing}: the PACS at {self.url} answered {_status(exc.response)}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise PacsError(f"could not {doing}: the PACS at {self.url} cannot be reached ({_reason(exc)})") from exc
        except requests.exceptions.Timeout as exc:
            raise PacsError(f"could not {doing}: the PACS at {self.url} did not answer in time") from exc
        except requests.exceptions.RequestException as exc:  # its text may quote the request's headers
            raise PacsError(f"could not {doing} on the PACS at {self.url}: {type(exc).__name__}") from None


def _status(response) -> str:
    if response is None:
        return "with an error"
    said = {401: "that the credentials are missing or wrong", 403: "that this account may not do that"}
    meaning = said.get(response.status_code)
    return f"HTTP {response.status_code} {response.reason}" + (f", which means {meaning}" if meaning else "")


def _reason(exc: Exception) -> str:
    """The innermost cause of a connection failure, without urllib3's retry wrapping."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return str(getattr(cause, "strerror", None) or cause).split(": ")[-1]


def _not_an_image(ds: pydicom.Dataset) -> str | None:
    """What the dataset is, when it is not an image to score."""
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in NOT_IMAGES:
        return NOT_IMAGES[sop_class]
    if not any(tag in ds for tag in PIXEL_TAGS):
        name = pydicom.uid.UID(sop_class).name if sop_class else "an object"
        return f"{name} objects without pixel data"
    return None


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, pydicom.multival.MultiValue):
        return "/".join(str(v) for v in value)
    return str(value)


def _study(ds: pydicom.Dataset) -> Study:
    return Study(
        study_uid=_text(ds, "StudyInstanceUID"),
        patient_name=_text(ds, "PatientName").replace("^", " ").strip(),
        patient_id=_text(ds, "PatientID"),
        date=_text(ds, "StudyDate"),
        description=_text(ds, "StudyDescription"),
        modalities=_text(ds, "ModalitiesInStudy"),
        accession=_text(ds, "AccessionNumber"),
    )


def _series(ds: pydicom.Dataset) -> Series:
    return Series(
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"),
        number=_text(ds, "SeriesNumber"),
        description=_text(ds, "SeriesDescription"),
        instances=_text(ds, "NumberOfSeriesRelatedInstances"),
    )


def _number(text: str) -> int:
    return int(text) if text.strip().lstrip("-").isdigit() else 1 << 30
