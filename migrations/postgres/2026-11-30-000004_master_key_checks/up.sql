-- Which master key each key id means: a key-check value (a fingerprint that
-- reveals nothing about the key), so a replica or restart with another key
-- under the same id is refused instead of sealing keys the others cannot open.
CREATE TABLE master_key_checks (
    key_id BIGINT PRIMARY KEY NOT NULL,
    check_value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
