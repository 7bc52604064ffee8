# Python, standard library only: examples/python/regionlimit.py next to your code.
import os
from regionlimit import Client, limit

client = Client(os.environ.get("LIMITER_URL", "http://127.0.0.1:8080"), timeout=0.5)

d = client.check("user:42")
print("allowed" if d.allowed else f"denied, retry in {d.retry_after_ms} ms", d.remaining)
if d.admission_id:
    client.refund(d.admission_id)  # the request did not happen after all

print([x.allowed for x in client.check_many(["user:1", {"key": "user:2", "cost": 2}])])

@limit(client, key=lambda user: f"user:{user}")
def view(user):  # any framework's view; a denied call returns ({"error": ...}, 429, headers)
    return "hello " + user

print(view("7"))
