-- Storage keys are now wrapped under a master key kept outside the database (docs/ARCHITECTURE.md):
-- `storage_key` holds nonce ‖ sealed key (72 bytes) and `key_generation` the master-key generation
-- it is wrapped under. Rows written before have a NULL generation and a raw 32-byte key; the
-- server wraps those at start.
ALTER TABLE spaces ADD COLUMN key_generation bigint;
