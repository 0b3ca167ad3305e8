"""A real gpsd (Debian's ``gpsd`` package) for tests, fed NMEA 0183 sentences through a pseudo-terminal as a
serial GPS receiver would send them, on a free loopback port."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import time
import tty
from pathlib import Path

from .broker import free_port


def nmea(body: str) -> bytes:
    """One NMEA sentence: ``$<body>*<checksum>`` (XOR of the body's characters) and CR LF."""
    checksum = functools.reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def _dm(value: float, width: int) -> str:
    deg = int(abs(value))
    return f"{deg:0{width}d}{(abs(value) - deg) * 60:07.4f}"


class FakeReceiver:
    """gpsd reading a pseudo-terminal that this object writes a fix to every ``every_s`` seconds."""

    def __init__(self, work: Path, lat: float, lon: float, *, every_s: float = 0.5) -> None:
        self.lat, self.lon, self.every_s = lat, lon, every_s
        self.port = free_port()
        self.work = work
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = -1
        self._slave = -1

    def start(self) -> FakeReceiver:
        exe = shutil.which("gpsd") or "/usr/sbin/gpsd"
        if not os.path.exists(exe):
            raise RuntimeError("gpsd is not installed (apt-get install gpsd; tools/test.sh installs it)")
        self.work.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        device = os.ttyname(self._slave)
        log = (self.work / "gpsd.log").open("wb")
        # -N foreground, -n poll the device without waiting for a client, -b read-only (never configure it)
        args = [exe, "-N", "-n", "-b", "-S", str(self.port), "-F", str(self.work / "gpsd.sock"), device]
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        threading.Thread(target=self._feed, name="fake-gps", daemon=True).start()
        return self

    def _feed(self) -> None:
        ns, ew = ("N" if self.lat >= 0 else "S"), ("E" if self.lon >= 0 else "W")
        lat, lon = _dm(self.lat, 2), _dm(self.lon, 3)
        while not self._stop.is_set():
            now = time.gmtime()
            hms, dmy = time.strftime("%H%M%S", now), time.strftime("%d%m%y", now)
            try:
                os.write(self._master, nmea(f"GPRMC,{hms}.00,A,{lat},{ns},{lon},{ew},0.0,0.0,{dmy},,,A"))
                os.write(self._master, nmea(f"GPGGA,{hms}.00,{lat},{ns},{lon},{ew},1,08,0.9,34.0,M,40.0,M,,"))
                os.write(self._master, nmea("GPGSA,A,3,01,02,03,04,05,06,07,08,,,,,1.8,0.9,1.5"))
            except OSError:
                return
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
