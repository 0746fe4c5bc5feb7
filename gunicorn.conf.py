"""gunicorn settings read from the working directory (``gunicorn wsgi:app`` run from the
repository root, ``make run``, the Docker image).

Only the access log's format is set here: where the log goes, the bind address and the
workers stay on the command line of each caller (``make run``, the Dockerfile, the
benchmarks), so this file changes nothing for a caller that writes no access log.

gunicorn's default format records the HTTP Basic user (``%(u)s``): a shop backend that
sends its API key with ``curl -u "$KEY:"`` would find the key in the log of every request.
This format keeps the rest of the combined log format (client address, time, request
line, status, response size, referer, user agent) and adds the duration in milliseconds.
"""
access_log_format = '%(h)s - - %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'
