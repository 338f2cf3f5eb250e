#!/usr/bin/env python3
"""A standalone Docker token server issuing RS256 JWTs that Distribution's
`auth: token` verifies (x5c header with the signing cert, which must be in
Distribution's rootcertbundle).

    python3 tokenserver.py --port T --key jwt.key --cert jwt.crt
                           [--issuer test-issuer] [--service test-registry]
                           [--user u:p ...] [--expires-in 300]

GET /token?service=..&scope=.. (anonymous or Basic) and POST /token (OAuth2
password grant). With --user, anonymous requests are refused; authenticated
users get every action they ask for, anonymous ones only pull.
GET /_stats, POST /_stats/reset as in fakecommon.py.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon as fc  # noqa: E402


class TokenApp:
    def __init__(self, args):
        self.stats = fc.Stats()
        self.issuer = fc.TokenIssuer(self.stats, args.service, fc.parse_users(args.user),
                                     args.expires_in, jwt=(args.key, args.cert, args.issuer))

    def route(self, h):
        if fc.stats_routes(h, self.stats):
            return
        if h.path_only.split("?")[0] != "/token":
            h.send_text(404, "not found\n")
            return
        self.issuer.handle(h)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--issuer", default="test-issuer")
    ap.add_argument("--service", default="test-registry")
    ap.add_argument("--user", action="append")
    ap.add_argument("--expires-in", type=int, default=300)
    args = ap.parse_args()
    fc.run_servers([fc.Server(args.port, fc.Handler, TokenApp(args), name="token")])


if __name__ == "__main__":
    main()
