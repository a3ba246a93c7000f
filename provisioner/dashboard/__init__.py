"""`dynoform dashboard`: a small web page over the operations, served on 127.0.0.1.

An edge beside the CLI: it calls provisioner.ops like any other caller (never provisioner.cli).
`auth` is the token gate, `views` the pure view models, `gather` what reads them through the
operations, `server` the HTTP handler and `actions` the few changes it can make.
"""
