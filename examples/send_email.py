"""A handler for a task type of your own: `taskhub serve --task-types sendEmail`, then
`taskhub worker examples/send_email.py`.

A registered type's `job.details` is the JSON object its producer gave, as given; what the
handler answers is merged over it (one level deep, its keys winning) when the task succeeds.
"""

from taskhub.client.worker import TaskFailed


def send_email(job):
    to = job.details.get("to", "") if job.details else ""
    if "@" not in to:
        raise TaskFailed(f"`{to}` is not an email address.", code="invalid_recipient")
    # Send the message here (smtplib, an API call, ...).
    return {"status": "sent", "messageId": f"msg-{job.uid}"}


HANDLERS = {"sendEmail": send_email}
