// A web process with no dependencies: shows which dyno and release answered.
// The release comes from DYNOFORM_RELEASE (falls back to Heroku's HEROKU_RELEASE_VERSION).
const http = require("http");
const os = require("os");

const port = Number(process.env.PORT || 5000);
const facts = () => ({
  app: "dynoform nodejs example",
  dyno: process.env.DYNO || "unknown",
  release: process.env.DYNOFORM_RELEASE || process.env.HEROKU_RELEASE_VERSION || "unknown",
  host: os.hostname(),
});
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = http.createServer((req, res) => {
  const f = facts();
  if (req.url === "/json") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify(f));
    return;
  }
  const rows = Object.entries(f).map(([k, v]) => `<li>${escape(k)}: <b>${escape(v)}</b></li>`).join("");
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><title>dynoform</title><h1>Hello from ${escape(f.dyno)}</h1><ul>${rows}</ul>\n`);
});

server.listen(port, () => console.log(`listening on ${port} as ${facts().dyno}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
