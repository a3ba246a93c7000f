// Answers with the Node.js version it runs (engines.node in package.json asks for 22.x).
const http = require("http");

const port = Number(process.env.PORT || 5000);
http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(`${process.version}\n`);
  })
  .listen(port, () => console.log(`listening on ${port} with node ${process.version}`));
