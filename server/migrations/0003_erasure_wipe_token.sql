-- An erased account's marker keeps the wipe token the erasing device revealed (if the account
-- asked its devices to wipe themselves on erasure), so those devices can tell a real erasure
-- from a server that only claims one (docs/PRIVACY.md).
ALTER TABLE erased_accounts ADD COLUMN wipe_token bytea;
