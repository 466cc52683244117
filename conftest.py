# Airbyte's standard test suites parametrize their tests from acceptance-test-config.yml through
# these hooks (and add the --connector-image options their image tests read).
pytest_plugins = ["airbyte_cdk.test.standard_tests.pytest_hooks"]
