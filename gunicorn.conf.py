"""gunicorn settings read from the working directory (``gunicorn wsgi:app`` run from the
repository root, ``make run``, the Docker image).

The access log and the worker timeout are set here; where the log goes, the bind address and
the workers stay on the command line of each caller (``make run``, the Dockerfile, the
benchmarks).

Timeout: a sync worker that has not finished its answer after ``timeout`` seconds is killed
mid-answer. The admin's CSV export of a year streams for about 40 s at half a million returns
(bench/README.md, "Admin and KPIs at scale"); gunicorn's default of 30 s cut the file short
without a word.

What the access log must not hold:
- the HTTP Basic user (gunicorn's default ``%(u)s``): a shop backend that sends its API key
  with ``curl -u "$KEY:"`` would find the key in the log of every request;
- a customer's status-page token (``/returns/status/<token>…``, in the request line and in
  the Referer of the pages that follow it): whoever reads the log could open the return's
  page and cancel it.
The format keeps the rest of the combined log format (client address, time, request line,
status, response size, referer, user agent) and adds the duration in milliseconds.
"""
import re

from gunicorn.glogging import Logger

timeout = 120

access_log_format = '%(h)s - - %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'

_STATUS_TOKEN = re.compile(r"(/returns/status/)[^/?#\s\"]+")


class AccessLogWithoutTokens(Logger):
    """gunicorn's logger, with customers' status tokens masked in the request line, the path
    and the referer."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = _STATUS_TOKEN.sub(r"\1***", atoms[key])
        return atoms


logger_class = AccessLogWithoutTokens
