-- adaptest center, schema 1. `@ID@` is the auto-increment primary key of the backend
-- (SQLite: INTEGER PRIMARY KEY AUTOINCREMENT, PostgreSQL: BIGSERIAL PRIMARY KEY).
CREATE TABLE products (
    id @ID@,
    name TEXT NOT NULL,
    vendor TEXT NOT NULL,
    UNIQUE (name, vendor)
);
CREATE TABLE versions (
    id @ID@,
    product_id BIGINT NOT NULL REFERENCES products (id),
    version TEXT NOT NULL,
    UNIQUE (product_id, version)
);
CREATE TABLE platforms (
    id @ID@,
    pkey TEXT NOT NULL UNIQUE,
    target TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    arch TEXT NOT NULL,
    cpu_vendor TEXT NOT NULL,
    cpu_model TEXT NOT NULL,
    os_id TEXT NOT NULL,
    os_version TEXT NOT NULL,
    os_name TEXT NOT NULL,
    kernel TEXT NOT NULL
);
CREATE TABLE runs (
    id @ID@,
    run_id TEXT NOT NULL UNIQUE,
    digest TEXT NOT NULL,
    version_id BIGINT NOT NULL REFERENCES versions (id),
    verdict TEXT NOT NULL,
    completion TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    plan TEXT NOT NULL,
    harness_version TEXT NOT NULL,
    uploader TEXT NOT NULL,
    received_at TEXT NOT NULL,
    bundle_status TEXT NOT NULL,
    bundle_signer TEXT NOT NULL,
    bundle_file TEXT NOT NULL,
    total BIGINT NOT NULL,
    passed BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE run_platforms (
    run_pk BIGINT NOT NULL REFERENCES runs (id),
    platform_id BIGINT NOT NULL REFERENCES platforms (id),
    target TEXT NOT NULL,
    verdict TEXT NOT NULL,
    PRIMARY KEY (run_pk, target)
);
CREATE INDEX run_platforms_platform ON run_platforms (platform_id);
CREATE TABLE combinations (
    id @ID@,
    run_pk BIGINT NOT NULL REFERENCES runs (id),
    combo_id TEXT NOT NULL,
    target TEXT NOT NULL,
    component TEXT NOT NULL,
    component_kind TEXT NOT NULL,
    suite TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    verdict TEXT NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX combinations_run ON combinations (run_pk);
CREATE TABLE cases (
    id @ID@,
    run_pk BIGINT NOT NULL REFERENCES runs (id),
    combination_pk BIGINT NOT NULL REFERENCES combinations (id),
    case_key TEXT NOT NULL,
    title TEXT NOT NULL,
    level TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    metrics TEXT NOT NULL
);
CREATE INDEX cases_run ON cases (run_pk);
CREATE INDEX cases_key ON cases (case_key);
CREATE TABLE tokens (
    id @ID@,
    name TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
