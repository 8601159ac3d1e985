-- Each audit event's link in a hash chain: SHA-256 over the previous event's
-- link and this event's fields. Editing, deleting or inserting an event by
-- hand breaks the chain at that point (`byok-server audit verify` finds it).
-- Events written before this column have no link; the chain starts after them.
ALTER TABLE audit_events ADD COLUMN chain_hash TEXT;
