"""Case tags and places on the unit: tags cleaned and ranked, a QR code and an EAN-13 barcode read beside a
real LFW face, the folder layout, EXIF GPS written by Pillow, gpsd's TPV reports, and
`edgeface trigger --tag`'s request files taken by the signal handler. gpsd is the real one (Debian's
package) reading NMEA from a pseudo-terminal."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from edgeface.capture.place import GpsdClient, Locator, exif_location, tpv_location
from edgeface.capture.settings import CaptureLocationConfig
from edgeface.capture.tags import CaseTag, CodeReader, TagError, choose, clean_tag, folder_tag
from edgeface.capture.triggers import TriggerHub, take_requests, write_request
from edgeface.testing import case_photos
from edgeface.testing.gpsd import FakeReceiver
from edgeface.vision.imageio import load_image


@pytest.fixture(scope="module")
def face(lfw_root: Path) -> Path:
    return lfw_root / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"


def test_tags_are_cleaned_and_refused_with_reasons() -> None:
    assert clean_tag("  BODY   0042 \t") == "BODY 0042"
    for bad, why in (("", "empty"), ("a\x00b", "control"), ("x" * 129, "at most 128")):
        with pytest.raises(TagError, match=why):
            clean_tag(bad)


def test_folder_layout_names_the_case_except_camera_cards() -> None:
    assert folder_tag("BODY-17/IMG_0001.jpg") == CaseTag("BODY-17", "folder")
    assert folder_tag("CASE 9/DCIM/100CANON/IMG_1.jpg") == CaseTag("CASE 9", "folder")
    assert folder_tag("IMG_0001.jpg") is None and folder_tag("DCIM/100CANON/IMG_1.jpg") is None


def test_the_most_specific_tag_wins() -> None:
    folder, qr, trig = CaseTag("F", "folder"), CaseTag("Q", "qrcode"), CaseTag("T", "trigger")
    assert choose(folder, qr, trig) == trig and choose(None, folder, qr) == qr and choose(None, None) is None


def test_qr_code_and_barcode_beside_a_real_face(face: Path, tmp_path: Path) -> None:
    reader = CodeReader(("qrcode", "barcode"))
    qr = case_photos.beside(face, case_photos.qr_image("BODY-0042"), tmp_path / "qr.jpg")
    assert reader.read(load_image(qr)) == [CaseTag("BODY-0042", "qrcode")]
    bars, digits = case_photos.ean13_image("400638133393")
    bar = case_photos.beside(face, bars, tmp_path / "bar.jpg")
    assert reader.read(load_image(bar)) == [CaseTag(digits, "barcode")]
    assert reader.read(load_image(face)) == []  # no code, no tag
    assert CodeReader(("barcode",)).read(load_image(qr)) == []  # only the kinds asked for
    assert CodeReader(("qrcode",), pattern=r"CASE-\d+").read(load_image(qr)) == []  # not a case by the pattern


def test_exif_gps_is_read_with_hemispheres_and_accuracy(face: Path, tmp_path: Path) -> None:
    south_east = exif_location(case_photos.with_gps(face, tmp_path / "a.jpg", -33.857067, 151.21, 5.0))
    assert south_east is not None and south_east.source == "exif" and south_east.accuracy_m == 5.0
    assert (round(south_east.lat, 6), round(south_east.lon, 6)) == (-33.857067, 151.21)
    north_west = exif_location(case_photos.with_gps(face, tmp_path / "b.jpg", 40.7128, -74.006))
    assert north_west is not None and (round(north_west.lat, 4), round(north_west.lon, 4)) == (40.7128, -74.006)
    assert exif_location(face) is None  # LFW photos carry no GPS


def test_tpv_reports_need_a_fix() -> None:
    assert tpv_location({"class": "TPV", "mode": 1, "lat": 1.0, "lon": 2.0}) is None
    assert tpv_location({"class": "SKY", "mode": 3, "lat": 1.0, "lon": 2.0}) is None
    loc = tpv_location({"class": "TPV", "mode": 3, "lat": 48.1, "lon": 11.5, "epx": 4.0, "epy": 7.5})
    assert loc is not None and loc.accuracy_m == 7.5 and loc.source == "gpsd"


def test_gpsd_client_keeps_the_newest_fix_and_locator_falls_back(tmp_path: Path, face: Path) -> None:
    """A real gpsd reading NMEA from a pseudo-terminal, as from a serial receiver."""
    gps = FakeReceiver(tmp_path / "gpsd", 52.52, 13.405).start()
    client = GpsdClient("127.0.0.1", gps.port).start()
    try:
        deadline = time.monotonic() + 30
        while client.latest(10) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        fix = client.latest(10)
        assert fix is not None and (round(fix.lat, 6), round(fix.lon, 6)) == (52.52, 13.405), gps.work
        assert fix.source == "gpsd" and fix.accuracy_m is not None and fix.accuracy_m > 0
        loc = Locator(CaptureLocationConfig(lat=1.0, lon=2.0), gpsd=client)
        gps_photo = case_photos.with_gps(face, tmp_path / "g.jpg", 10.0, 20.0)
        assert loc.locate(gps_photo).source == "exif"  # type: ignore[union-attr]
        assert loc.locate(face).source == "gpsd"  # type: ignore[union-attr]
        assert client.latest(0.0) is None  # too old for a zero max age
        gps.stop()  # the receiver gone: the last fix ages out, and the static place answers
        time.sleep(1.5)
        assert client.latest(1.0) is None
        fallback = Locator(CaptureLocationConfig(gpsd_max_age_s=1.0, lat=1.0, lon=2.0), gpsd=client)
        assert fallback.locate(face).as_dict() == {"lat": 1.0, "lon": 2.0, "source": "static"}  # type: ignore[union-attr]
        assert Locator(CaptureLocationConfig(sources=("static",))).locate(None) is None  # no place set
    finally:
        client.close()
        gps.stop()


def test_trigger_requests_carry_tags_to_the_signal_handler(tmp_path: Path) -> None:
    folder = tmp_path / "triggers"
    write_request(folder, " BODY-7 ")
    write_request(folder, None)
    stale = write_request(folder, "OLD")
    stale.write_text(json.dumps({"tag": "OLD", "at": time.time() - 3600}))
    os.replace(stale, folder / "0.json")  # oldest name, and stale: dropped
    with pytest.raises(TagError):
        write_request(folder, "\x07")
    hub = TriggerHub(request_dir=folder)
    hub.on_signal()  # two waiting requests (signals may coalesce): two triggers
    first, second = hub.next(1), hub.next(1)
    assert first is not None and first.tag == CaseTag("BODY-7", "trigger") and first.reason == "signal"
    assert second is not None and second.tag is None
    assert hub.next(0.01) is None and take_requests(folder) == [] and not list(folder.glob("*.json"))
    hub.on_signal()  # a signal with no request: a plain trigger
    t = hub.next(1)
    assert t is not None and t.tag is None
