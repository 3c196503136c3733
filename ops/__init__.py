"""Operations engines behind the operator commands: replay, rebuild, verify, status and the
dead-letter tools. Each works on the topics and Redis through the same code as the workers
(the pipeline, the stores, the key schema); the command line only parses and prints."""
