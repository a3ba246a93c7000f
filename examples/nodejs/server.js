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

// The router keeps idle connections to a dyno a few seconds and sends later requests on them:
// Node's own 5 s could close one just as a request arrives on it (a POST would then fail), so
// idle connections stay 95 s here (headersTimeout must exceed it).
server.keepAliveTimeout = 95_000;
server.headersTimeout = 96_000;
server.listen(port, () => console.log(`listening on ${port} as ${facts().dyno}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
