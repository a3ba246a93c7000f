"""The release phase: create the table (idempotent) before any dyno of the release starts."""

import db

db.run("CREATE TABLE IF NOT EXISTS visits (id int PRIMARY KEY, count bigint NOT NULL)")
db.run("INSERT INTO visits (id, count) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
print("visits table ready", flush=True)
