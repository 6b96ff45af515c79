"""Library log records that say ERROR for what the library retries by itself, told as what
they are: a newcomer who runs `make run` should see ERROR only for errors.

aiokafka logs ``Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError``
at every start of a consumer group (the broker is still electing the group's coordinator) and
then simply asks again; that record becomes INFO here. A coordinator error that is not
transient stays an ERROR.
"""

from __future__ import annotations

import logging

TRANSIENT = ("GroupCoordinatorNotAvailableError", "CoordinatorLoadInProgressError",
             "NotCoordinatorForGroupError")


class _RetriedErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and any(name in record.getMessage()
                                                   for name in TRANSIENT):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    logging.getLogger("aiokafka.consumer.group_coordinator").addFilter(_RetriedErrors())
