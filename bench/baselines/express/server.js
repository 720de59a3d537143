// Baseline: the receiver Meta's own webhook samples show, on Express. express.json() parses the
// body and keeps the raw bytes (verify callback) so the X-Hub-Signature-256 HMAC is checked over
// exactly what was sent, in constant time; then 200. Nothing is stored.
// Run: node server.js --port 8080 --secret SECRET   (express from bench/results/.node, see tools.py)
'use strict';

const crypto = require('node:crypto');
const express = require('express');

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const port = Number(arg('port'));
const secret = arg('secret');
const app = express();

app.use(express.json({
  limit: '4mb',
  verify: (req, _res, buf) => { req.rawBody = buf; },
}));

app.post('/webhook', (req, res) => {
  const given = Buffer.from(req.get('x-hub-signature-256') || '');
  const expected = Buffer.from(
    'sha256=' + crypto.createHmac('sha256', secret).update(req.rawBody || '').digest('hex'));
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    res.sendStatus(401);
    return;
  }
  res.sendStatus(200);
});

app.listen(port, '127.0.0.1');
