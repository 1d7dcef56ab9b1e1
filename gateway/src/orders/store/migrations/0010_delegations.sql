-- Vendor delegation (`orders::delegation`): a vendor's contract period (同期: the bid round it
-- won; delegation is only between vendors of one period), and the ledger of delegations: who
-- handed which order to whom, the call-out fee fixed then, and when it was voided.
ALTER TABLE vendors ADD COLUMN period TEXT;
CREATE TABLE vendor_delegations (
    id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders (id),
    at_ms INTEGER NOT NULL, actor TEXT NOT NULL, township TEXT NOT NULL, period TEXT NOT NULL,
    from_vendor TEXT NOT NULL, from_team TEXT NOT NULL, to_vendor TEXT NOT NULL,
    to_team TEXT NOT NULL, reason TEXT NOT NULL, fee_cents INTEGER NOT NULL,
    voided_at_ms INTEGER, void_reason TEXT
);
CREATE INDEX vendor_delegations_order ON vendor_delegations (order_id, id);
CREATE INDEX vendor_delegations_from ON vendor_delegations (from_vendor, at_ms);
CREATE INDEX vendor_delegations_to ON vendor_delegations (to_vendor, at_ms);
