-- A generated SaaS tenant schema, for the postgres-schema tests and
-- bench/pg_bench.sh: CALL public.make_tenant('tenant_0001', SCALE).
--
-- Five tables with foreign keys, indexes (a GIN one among them), a view,
-- two plpgsql functions and a trigger; text that differs per tenant (it is
-- derived from the schema's name), so tenants do not deduplicate against
-- each other. SCALE 100 dumps to about 1 MB (pg_dump -Fc -Z0): 2,000
-- customers, 500 products, 5,000 orders, 10,000 order items, 3,000 events.
CREATE OR REPLACE PROCEDURE public.make_tenant(s text, scale int) LANGUAGE plpgsql AS $p$
BEGIN
  EXECUTE format($q$
    CREATE SCHEMA %1$I;
    CREATE TABLE %1$I.customers (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL,
      created timestamptz NOT NULL);
    CREATE TABLE %1$I.products (id int PRIMARY KEY, sku text NOT NULL, price numeric(10,2) NOT NULL);
    CREATE TABLE %1$I.orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES %1$I.customers,
      created timestamptz NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL DEFAULT 0);
    CREATE TABLE %1$I.order_items (order_id int NOT NULL REFERENCES %1$I.orders, product_id int NOT NULL
      REFERENCES %1$I.products, qty int NOT NULL, price numeric(10,2) NOT NULL,
      PRIMARY KEY (order_id, product_id));
    CREATE TABLE %1$I.events (id bigint PRIMARY KEY, order_id int REFERENCES %1$I.orders,
      kind text NOT NULL, payload jsonb NOT NULL);
    CREATE INDEX ON %1$I.orders (customer_id);
    CREATE INDEX ON %1$I.events USING gin (payload);
    CREATE VIEW %1$I.open_orders AS SELECT o.id, c.email, o.total FROM %1$I.orders o
      JOIN %1$I.customers c ON c.id = o.customer_id WHERE o.status IN ('new', 'paid');
    CREATE FUNCTION %1$I.order_total(oid int) RETURNS numeric LANGUAGE plpgsql STABLE AS $f$
      BEGIN RETURN (SELECT coalesce(sum(qty * price), 0) FROM %1$I.order_items WHERE order_id = oid); END $f$;
    CREATE FUNCTION %1$I.touch() RETURNS trigger LANGUAGE plpgsql AS $f$
      BEGIN NEW.total := coalesce(NEW.total, 0); RETURN NEW; END $f$;
    CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON %1$I.orders
      FOR EACH ROW EXECUTE FUNCTION %1$I.touch();
    INSERT INTO %1$I.customers SELECT i, 'user' || i || '@' || %2$L || '.example',
      'customer ' || md5(%2$L || i), '2024-01-01'::timestamptz + i * interval '1 minute'
      FROM generate_series(1, 20 * %3$s) i;
    INSERT INTO %1$I.products SELECT i, 'SKU-' || substr(md5(%2$L || i), 1, 10), (i %% 97) + 0.99
      FROM generate_series(1, 5 * %3$s) i;
    INSERT INTO %1$I.orders SELECT i, 1 + i %% (20 * %3$s), '2024-02-01'::timestamptz + i * interval '1 second',
      (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i %% 4], (i %% 500) * 1.25
      FROM generate_series(1, 50 * %3$s) i;
    INSERT INTO %1$I.order_items SELECT 1 + i / 2, 1 + (i * 7) %% (5 * %3$s), 1 + i %% 5, (i %% 97) + 0.99
      FROM generate_series(0, 100 * %3$s - 1) i ON CONFLICT DO NOTHING;
    INSERT INTO %1$I.events SELECT i, 1 + i %% (50 * %3$s), 'kind-' || (i %% 7),
      jsonb_build_object('n', i, 'h', md5(%2$L || i)) FROM generate_series(1, 30 * %3$s) i;
  $q$, s, s, scale);
END $p$;
