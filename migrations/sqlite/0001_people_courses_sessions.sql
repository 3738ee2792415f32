-- The control plane's schema, SQLite dialect (migrations/postgres holds the same for PostgreSQL).
-- Times are milliseconds since the Unix epoch; ids are opaque text; flags are 0/1.

CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    email            TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    -- argon2id PHC string; NULL for people who never sign in to the admin UI.
    password_hash    TEXT,
    disabled         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL
);

CREATE TABLE courses (
    id               TEXT PRIMARY KEY,
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    code             TEXT NOT NULL,
    title            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (organisation_id, code)
);

-- A person's roles: `admin` for the whole organisation (course_id NULL), the others per course.
CREATE TABLE user_roles (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'teacher', 'teaching_assistant', 'student', 'guest', 'captioner')),
    course_id   TEXT REFERENCES courses (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    CHECK ((role = 'admin') = (course_id IS NULL))
);
CREATE UNIQUE INDEX user_roles_per_course ON user_roles (user_id, role, course_id) WHERE course_id IS NOT NULL;
CREATE UNIQUE INDEX user_roles_organisation ON user_roles (user_id, role) WHERE course_id IS NULL;
CREATE INDEX user_roles_course ON user_roles (course_id);

-- Edge nodes enrolled in the cluster. The id is the node's peer-plane key (64 hex digits).
CREATE TABLE edges (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    peer_addr     TEXT NOT NULL,
    public_url    TEXT NOT NULL,
    capacity      BIGINT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'disabled')),
    version       TEXT NOT NULL DEFAULT '',
    load          BIGINT NOT NULL DEFAULT 0,
    sessions      BIGINT NOT NULL DEFAULT 0,
    last_seen_at  BIGINT,
    enrolled_at   BIGINT NOT NULL
);

CREATE TABLE enrolment_codes (
    -- SHA-256 of the code, hex: the code itself is shown once and never stored.
    code_hash   TEXT PRIMARY KEY,
    created_by  TEXT NOT NULL REFERENCES users (id),
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    used_by     TEXT REFERENCES edges (id),
    created_at  BIGINT NOT NULL
);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    course_id         TEXT NOT NULL REFERENCES courses (id),
    title             TEXT NOT NULL,
    starts_at         BIGINT NOT NULL,
    ends_at           BIGINT NOT NULL,
    teacher_id        TEXT NOT NULL REFERENCES users (id),
    home_edge_id      TEXT NOT NULL REFERENCES edges (id),
    room              TEXT,
    recording_policy  TEXT NOT NULL DEFAULT 'off' CHECK (recording_policy IN ('off', 'optional', 'required')),
    -- JSON array of plugin names switched on when the class starts.
    plugins           TEXT NOT NULL DEFAULT '[]',
    capacity          BIGINT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'live', 'ended', 'cancelled')),
    started_at        BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX sessions_teacher_time ON sessions (teacher_id, starts_at);
CREATE INDEX sessions_room_time ON sessions (room, starts_at);
CREATE INDEX sessions_edge_time ON sessions (home_edge_id, starts_at);

-- Join tokens issued: who may join which session, as what.
CREATE TABLE session_participants (
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES users (id),
    role         TEXT NOT NULL,
    -- JSON object of grants (publish, subscribe, chat, ...).
    permissions  TEXT NOT NULL DEFAULT '{}',
    issued_at    BIGINT NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    -- SHA-256 of the key, hex.
    key_hash      TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

CREATE TABLE admin_sessions (
    -- SHA-256 of the cookie's value, hex.
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE plugin_packages (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    -- The package's manifest (JSON) as it was verified at upload.
    manifest     TEXT NOT NULL,
    package      BLOB NOT NULL,
    uploaded_by  TEXT NOT NULL REFERENCES users (id),
    uploaded_at  BIGINT NOT NULL,
    approved_at  BIGINT,
    approved_by  TEXT REFERENCES users (id),
    UNIQUE (name, version)
);

-- Which version of a plugin the edges should run.
CREATE TABLE plugin_rollouts (
    name        TEXT PRIMARY KEY,
    package_id  TEXT NOT NULL REFERENCES plugin_packages (id),
    rolled_at   BIGINT NOT NULL,
    rolled_by   TEXT NOT NULL REFERENCES users (id)
);
