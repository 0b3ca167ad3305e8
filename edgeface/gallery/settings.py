"""The gallery's configuration sections: the on-device gallery (``[gallery]``) and central enrollment
(``[enroll]``). Assembled into :class:`edgeface.config.Config` by the config package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.fields import setting


@dataclass(frozen=True)
class GalleryConfig:
    """The on-device gallery: where it lives, who may sign it, how it is searched, synced and encrypted."""

    dir: Path = setting(
        Path("/var/lib/edgeface/gallery"),
        "Device gallery store: versions/, staging/ and the 'current' symlink (see docs/gallery.md).",
    )
    trusted_keys: tuple[Path, ...] = setting(
        [], "Ed25519 public keys (PEM) of the central server; a bundle signed by none of them is refused."
    )
    top_k: int = setting(5, "Candidates (distinct identities) returned per face, best first.", min=1, max=100)
    target_fpir: float = setting(
        0.01,
        "When a bundle is built: the chance that a face of someone NOT enrolled is reported as a match, "
        "from which the bundle's decision thresholds are derived for its size: the normalised one from the "
        "gallery's own impostor scores (edgeface/gallery/cohort.py), the raw cosine one from the embedder "
        "card (edgeface/vision/calibration.py). Candidates are sent with their scores either way; this only "
        "sets the 'match' flag.",
        min=1e-6,
        max=0.5,
    )
    threshold: float | None = setting(
        None,
        "Raw cosine similarity below which the best candidate is 'no match'. Setting it makes every decision "
        "on raw cosine (candidates ranked by it), also with a normalised bundle; normalised scores are still "
        "reported.",
        min=-1.0,
        max=1.0,
        unset="the bundle's own rule: its normalised threshold where it carries normalisation, else its "
        "cosine threshold (both derived at build time from gallery.target_fpir)",
    )
    normalised_threshold: float | None = setting(
        None,
        "Normalised score (S-norm, see docs/gallery.md) below which the best candidate is 'no match', for "
        "bundles that carry normalisation; ignored when gallery.threshold is set, and for bundles without it.",
        min=-1000.0,
        max=1000.0,
        unset="the normalised threshold the bundle carries (derived for its size and gallery.target_fpir)",
    )
    exact_max: int | None = setting(
        None,
        "Scan every vector (exact, no index) for galleries up to this size.",
        min=0,
        unset="the built-in size where an exact scan is faster than the index",
    )
    search_k: int | None = setting(
        None, "Annoy nodes inspected per query.", min=1, unset="chosen from the gallery size to hold recall"
    )
    encrypt: bool = setting(
        True, "Keep the installed gallery encrypted at rest (AES-GCM) with the device key; see key_*."
    )
    key_file: Path | None = setting(
        None,
        "Device key file (32 random bytes, mode 0600), used when no systemd credential or env key is set.",
        unset="no key file: the systemd credential or the environment key",
    )
    key_env: str = setting(
        "EDGEFACE_GALLERY_KEY", "Environment variable holding the device key (64 hex digits), if set."
    )
    key_credential: str = setting(
        "edgeface-gallery-key",
        "systemd credential name read from $CREDENTIALS_DIRECTORY (TPM-sealed with systemd-creds), if present.",
    )
    sync_url: str = setting("", "Base URL of the published gallery (where latest.json is); empty disables sync.")
    sync_interval_s: int = setting(
        3600, "Seconds between scheduled sync checks (a retained MQTT announcement triggers one at once).", min=10
    )
    sync_timeout_s: float = setting(30.0, "Network timeout per HTTP request (seconds).", min=1.0, max=600.0)
    sync_ca_file: Path | None = setting(
        None, "CA bundle (PEM) to trust for an https:// sync_url.", unset="the system CAs"
    )
    sync_max_bytes: int = setting(
        8 * 1024**3, "Refuse a bundle whose files add up to more than this many bytes.", min=1024
    )
    sync_username: str = setting(
        "", "User name for the central server's bundle endpoint (HTTP Basic); empty means device.id."
    )
    sync_password_file: Path | None = setting(
        None,
        "File holding this unit's bundle-download token (first line, mode 0600; `edgeface server add-device` "
        "prints it).",
        unset="no credentials are sent (a plain `edgeface gallery serve` needs none)",
    )
    allow_insecure_http: bool = setting(
        False,
        "Send the bundle-download token (sync_password_file) over a plain http:// sync_url. Off: such a sync "
        "is refused, since anyone on the network path could read the token; use https://. Only for a closed "
        "lab network. Credentials never follow a redirect to another origin, whatever this says.",
    )
    pointer_ttl_s: int = setting(
        3 * 86400,
        "When publishing (gallery build/refresh, the central server): seconds the signed latest.json stays "
        "valid. Units refuse an older pointer and show their gallery as stale, so a mirror cannot keep them on "
        "an old gallery; re-sign it in time (`edgeface gallery refresh` from cron, daily; the central server "
        "re-signs when a unit fetches it past half its lifetime). Longer = more offline slack for mirrors.",
        min=600,
        max=90 * 86400,
    )


@dataclass(frozen=True)
class EnrollConfig:
    """Enrollment on the central side: quality, duplicates and the incremental cache."""

    workspace: Path = setting(
        Path("~/.local/share/edgeface/enrollment"),
        "Enrollment workspace: a SQLite file of enrolled images, provenance and cached embeddings ('~' is "
        "your home; one place, whichever folder you run edgeface from).",
    )
    duplicate_similarity: float | None = setting(
        None,
        "Flag two enrolled images as near-duplicates at or above this cosine similarity. Depends on the "
        "embedder: between two different photos of one person and a re-encoded copy of one photo "
        "(MobileFaceNet: up to ~0.90 vs ~0.96; dlib: ~0.96 vs ~0.995).",
        min=0.0,
        max=1.0,
        unset="the embedder card's [thresholds] near_duplicate",
    )
    second_face_ratio: float = setting(
        0.7,
        "Refuse an image whose second-largest face is at least this fraction of the largest (ambiguous: "
        "enrollment photos must show one person).",
        min=0.0,
        max=1.0,
    )
