"""The server's schema, as SQLAlchemy Core tables (migrations/versions/ creates exactly these).

Times are UNIX seconds (float) so SQLite and PostgreSQL compare and index them the same way;
``captured_at`` keeps the device's RFC 3339 text too.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("roles", String(64), nullable=False),  # comma-separated: reviewer, admin (empty: none granted yet)
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    # The person the account belongs to (staff number, name): accounts of one person never count as two.
    Column("owner", String(64), nullable=False),
    # The administrator who created it on the web (NULL: the command line, or before this was recorded).
    Column("created_by", Integer, ForeignKey("users.id")),
    # The administrator who last set its password for it (NULL: its own user, or the command line).
    Column("password_set_by", Integer, ForeignKey("users.id")),
)

# Roles an administrator asked to add to an account: granted only when a second administrator, another
# person than the requester and the account, approves (edgeface.server.people).
role_requests = Table(
    "role_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("roles", String(64), nullable=False),  # comma-separated roles to add
    Column("requested_by", Integer, ForeignKey("users.id"), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # pending, approved, refused
    Column("decided_by", Integer, ForeignKey("users.id")),
    Column("decided_at", Float),
    Index("role_requests_state", "state", "user_id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False),  # SHA-256 of the bearer token; the token is the secret
    Column("name", String(100), nullable=False),
    Column("roles", String(64), nullable=False),  # comma-separated narrowing of the user's roles ("" = all)
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("last_used_at", Float),
    Column("revoked_at", Float),
    UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 of the cookie value; the cookie is the secret
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("ip", String(64), nullable=False),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Index("login_failures_user", "username", "at"),
    Index("login_failures_ip", "ip", "at"),
)

results = Table(
    "results",
    metadata,
    Column("id", String(36), primary_key=True),  # the device's UUIDv7: stored once
    Column("device_id", String(64), nullable=False),
    Column("captured_at", String(40), nullable=False),
    Column("captured_ts", Float, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("top_identity", String(128)),
    Column("top_score", Float),
    Column("gallery_version", Integer),
    Column("model_id", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    # pending, awaiting_second, confirmed, rejected, unknown
    Column("review_status", String(24), nullable=False, default="pending"),
    Column("reviewed_at", Float),
    # When retention removed the face crop from the payload (NULL: never had one, or still has it).
    Column("crop_purged_at", Float),
    Index("results_queue", "review_status", "received_at"),
    Index("results_device", "device_id", "captured_ts"),
    Index("results_identity", "top_identity"),
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", String(36), ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("verdict", String(16), nullable=False),  # confirm, reject, unknown
    Column("identity_id", String(128)),  # the candidate confirmed
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Index("reviews_result", "result_id"),
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("state", String(16)),  # online / offline, from the retained status and the last will
    Column("status", Text),  # the latest status document
    Column("status_ts", Float),  # the device's own time of that status
    Column("updated_at", Float),  # when the server received it
    Column("last_result_at", Float),
    Column("last_fetch_at", Float),  # last authenticated bundle download
    Column("token_hash", String(64)),  # SHA-256 of the bundle-download token (256 random bits)
    Column("token_created_at", Float),
    Column("revoked", Boolean, nullable=False, default=False),
)

identities = Table(
    "identities",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
    # enrolled; pending: a "new person" confirmed in review, with no enrolled image yet
    Column("status", String(16), nullable=False, default="enrolled", server_default="enrolled"),
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("identity_id", String(128), ForeignKey("identities.id", ondelete="CASCADE"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("filename", String(128), nullable=False),  # under <data_dir>/images/
    Column("source", Text, nullable=False),
    Column("consent", Text, nullable=False),
    Column("enrolled_by", String(64), nullable=False),
    Column("enrolled_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # enrolled, unchanged, refused, error
    Column("reasons", Text, nullable=False, default=""),
    Column("result_id", String(36)),  # the confirmed result whose probe this image is (learning from review)
    Index("images_identity", "identity_id"),
)

publications = Table(
    "publications",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("published_at", Float, nullable=False),
    Column("published_by", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("identities", Integer, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("announced", Boolean, nullable=False, default=False),
)

# Each embedder's bundle of a publication (one row per version and embedder; the publication's row above
# carries the first embedder's figures, as before there were several).
publication_bundles = Table(
    "publication_bundles",
    metadata,
    Column("version", Integer, ForeignKey("publications.version", ondelete="CASCADE"), primary_key=True),
    Column("embedder_id", String(128), primary_key=True),
    Column("embedder_sha256", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("identities", Integer, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("embedded", Integer, nullable=False),  # images embedded for it at this publication (not cached)
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", Text, nullable=False),  # stored whole: exactly what the entry's hash covers
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row (id 1): the newest entry's seq and hash. Appends lock it, which orders them across processes;
# verification checks the chain ends here, so deleting the newest entries is detected too.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

rejected = Table(
    "rejected",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("received_at", Float, nullable=False),
    Column("topic", String(512), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("error", String(500), nullable=False),
    Column("size", Integer, nullable=False),
    Column("head", LargeBinary, nullable=False),
)

# Cases a person closed (edgeface.server.retention): a case is open until it has a row here; retention
# keeps an open case's results whole and counts a closed one's from its closure.
case_closures = Table(
    "case_closures",
    metadata,
    Column("tag", String(128), primary_key=True),  # the results' case/body tag
    Column("closed_at", Float, nullable=False),
    Column("closed_by", String(64), nullable=False),
    Column("note", Text, nullable=False, default=""),
)

# Signed commands sent to units (edgeface.server.commands): one row per command, with its per-unit
# sequence number, the exact signed document, and the unit's reply once it came. Every row is also audited.
device_commands = Table(
    "device_commands",
    metadata,
    Column("id", String(36), primary_key=True),  # the command's UUIDv7
    Column("device_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("command", String(32), nullable=False),
    Column("issued_by", String(64), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("document", Text, nullable=False),  # the signed JSON as published
    Column("state", String(16), nullable=False),  # issued, sent, unsent, applied, refused, failed
    Column("reason", String(32), nullable=False, default=""),  # the unit's reason code
    Column("detail", Text, nullable=False, default=""),
    Column("replied_at", Float),
    Column("reply_id", String(36)),  # the unit's last reply (a redelivered reply is recorded once)
    UniqueConstraint("device_id", "seq", name="uq_device_commands_device_seq"),
)
