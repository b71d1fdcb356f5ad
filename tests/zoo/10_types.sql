-- Enum (with a value added later, so that its sort order is not its creation order), composite and
-- range types, domains with checks (one over an extension's type).
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok';
CREATE TYPE address AS (street text, city text, zip text);
CREATE TYPE price_band AS RANGE (subtype = numeric);
CREATE DOMAIN email AS citext CONSTRAINT email_has_at CHECK (VALUE ~ '^[^@ ]+@[^@ ]+$');
CREATE DOMAIN cents AS bigint NOT NULL DEFAULT 0 CONSTRAINT cents_not_negative CHECK (VALUE >= 0);
COMMENT ON TYPE mood IS 'how a customer feels';
COMMENT ON DOMAIN email IS 'an address with an @, compared without case';
