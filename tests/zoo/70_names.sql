-- Quoted names: capitals, spaces, quotes, a keyword, non-ASCII; quoted enum labels; comments with quotes.
CREATE TYPE "Ticket ""State""" AS ENUM ('open', 'it''s done', 'Won''t Fix');
CREATE TABLE "Order ""Lines"" 2026" (
  "Line No" int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  "SKU" text NOT NULL,
  "Qty's" int NOT NULL CHECK ("Qty's" > 0),
  "select" text,
  "Größe" text,
  "State" "Ticket ""State""" NOT NULL DEFAULT 'open'
);
CREATE INDEX "Lines by ""SKU""" ON "Order ""Lines"" 2026" ("SKU") WHERE "State" <> 'Won''t Fix';
CREATE VIEW "Open ""Lines""" AS SELECT "Line No", "SKU" FROM "Order ""Lines"" 2026" WHERE "State" = 'open';
COMMENT ON TABLE "Order ""Lines"" 2026" IS 'lines with "quotes", it''s $$ and \backslashes\';
COMMENT ON COLUMN "Order ""Lines"" 2026"."Qty's" IS 'how many';
INSERT INTO "Order ""Lines"" 2026" ("SKU", "Qty's", "select", "Größe", "State")
  SELECT 'SKU-' || g, g, CASE WHEN g % 2 = 0 THEN 'yes' END, (ARRAY['S', 'M', 'XL'])[1 + g % 3],
         (ARRAY['open', 'it''s done', 'Won''t Fix']::"Ticket ""State"""[])[1 + g % 3]
    FROM generate_series(1, 12) g;
GRANT SELECT ("SKU", "Qty's") ON "Order ""Lines"" 2026" TO zoo_readonly;
