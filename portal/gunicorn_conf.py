"""gunicorn settings every deployment shares (`gunicorn -c python:portal.gunicorn_conf wsgi:app`).

The default access log line holds the Basic-auth user name (%(u)s) and the whole request line
with its query string (%(r)s): a password typed into the name field, or a secret in a query,
would land in the log. This one logs the path without the query, and the request id that ties
the line to the app's own log lines.
"""
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'
