"""Rules of the suite itself."""

import pytest

from tests.conftest import no_broker


def test_a_missing_broker_fails_the_integration_tests_never_skips_them():
    with pytest.raises(pytest.fail.Exception, match="no Kafka broker"):
        no_broker("java is not installed")
