"""``canonical_signature`` on failure texts of data platforms and the services around them.

``test_signature_ecosystems.py``, ``test_signature_services.py`` and
``test_signature_operations.py`` cover languages, services and operations. This module holds
what version 6 still signed apart (listed in its limits: a short host name against an IP, an
age of 8 days and more, a body Python prints against the same body in JSON, an AWS ARN's user,
libpq's ``(address)`` after a host name) and failure texts of platforms none of them holds in
these forms: systemd and journald, nginx and Apache, Kafka, Elasticsearch, Spark on YARN, Ray,
Dask, Docker and containerd, Prometheus alerts, Windows events, Java and Python traces, SQL
errors, HTTP errors with request and trace ids, and volatile values in many notations. The
texts were written for this test from how each of them prints a failure (no public log
dataset was used), in the two kinds of case of ``test_signature_ecosystems.py``:

* ``FAILURES``: the texts of one failure differ only in what varies between two occurrences
  and must share one signature; two failures must not;
* ``TEMPLATES``: failure texts with holes that Hypothesis fills from one strategy of volatile
  values each; any two fillings must share a signature.

Signature version 7 comes from these texts; ``test_version_7_*`` below names each of its rules
with the case that version 6 signed apart.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import strategies as st

from rundoctor.signature import canonical_signature
from tests.doctor.test_signature_ecosystems import (
    VOLATILE,
    Failures,
    assert_fillings_share_a_signature,
    assert_one_signature,
    assert_own_signatures,
    failure_params,
    merged_failures,
    template_params,
)

FAILURES: Failures = {
    "hosts": (
        (
            # Version 6: "node12" was "<n>", "10.0.0.12" and "db3.example.com" "<addr>".
            "ssh to a host refused",
            (
                "ssh: connect to host node12 port 22: Connection refused",
                "ssh: connect to host 10.0.0.12 port 22: Connection refused",
                "ssh: connect to host db3.example.com port 22: Connection refused",
                "ssh: connect to host fe80::1%eth0 port 22: Connection refused",
            ),
        ),
        (
            # Version 6: the "(address)" libpq adds after a host name made a signature of its
            # own.
            "a PostgreSQL server refuses",
            (
                'psycopg2.OperationalError: connection to server at "db.example.com" '
                "(10.0.0.5), port 5432 failed: Connection refused",
                'psycopg2.OperationalError: connection to server at "10.0.0.6", port 5432 '
                "failed: Connection refused",
                'psycopg2.OperationalError: connection to server at "pg-2" (10.0.0.7), port '
                "5433 failed: Connection refused",
            ),
        ),
    ),
    "systemd": (
        (
            "a unit exits with failure",
            (
                "Dec 07 22:01:13 web-1 systemd[1]: nginx.service: Main process exited, "
                "code=exited, status=1/FAILURE",
                "Jan 12 03:44:09 web-22 systemd[1]: nginx.service: Main process exited, "
                "code=exited, status=2/FAILURE",
            ),
        ),
        (
            "a unit restarts",
            (
                "systemd[1]: app.service: Scheduled restart job, restart counter is at 5.",
                "systemd[1]: app.service: Scheduled restart job, restart counter is at 12.",
            ),
        ),
        (
            "the OOM killer",
            (
                "kernel: Out of memory: Killed process 4242 (python3) total-vm:10485760kB, "
                "anon-rss:8388608kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:20480kB "
                "oom_score_adj:0",
                "kernel: Out of memory: Killed process 977 (python3) total-vm:2097152kB, "
                "anon-rss:1048576kB, file-rss:4kB, shmem-rss:0kB, UID:1001 pgtables:4096kB "
                "oom_score_adj:900",
            ),
        ),
    ),
    "web servers": (
        (
            "nginx: upstream refused",
            (
                "2024/05/01 12:03:04 [error] 1234#1234: *5678 connect() failed (111: "
                "Connection refused) while connecting to upstream, client: 10.0.0.7, server: "
                'api.example.com, request: "GET /v1/jobs/42 HTTP/1.1", upstream: '
                '"http://127.0.0.1:8080/v1/jobs/42", host: "api.example.com"',
                "2024/06/11 01:00:59 [error] 77#77: *1 connect() failed (111: Connection "
                "refused) while connecting to upstream, client: 192.168.1.20, server: "
                'api.example.com, request: "GET /v1/jobs/7 HTTP/1.1", upstream: '
                '"http://127.0.0.1:8080/v1/jobs/7", host: "api.example.com"',
            ),
        ),
        (
            "nginx: upstream timed out",
            (
                "2024/05/01 12:03:04 [error] 1234#1234: *5678 upstream timed out (110: "
                "Connection timed out) while reading response header from upstream, client: "
                '10.0.0.7, server: _, request: "POST /api/run HTTP/2.0", upstream: '
                '"http://10.0.3.4:9000/api/run"',
                "2024/05/01 12:09:14 [error] 1234#1234: *9001 upstream timed out (110: "
                "Connection timed out) while reading response header from upstream, client: "
                '10.0.0.9, server: _, request: "POST /api/run HTTP/2.0", upstream: '
                '"http://10.0.3.5:9000/api/run"',
            ),
        ),
        (
            "Apache: proxy refused",
            (
                "[Wed May 01 12:03:04.123456 2024] [proxy:error] [pid 4242:tid 139872] "
                "(111)Connection refused: AH00957: HTTP: attempt to connect to 127.0.0.1:8080 "
                "(localhost) failed",
                "[Thu Jun 13 01:02:03.000001 2024] [proxy:error] [pid 17:tid 1400] "
                "(111)Connection refused: AH00957: HTTP: attempt to connect to 127.0.0.1:8081 "
                "(localhost) failed",
            ),
        ),
    ),
    "kafka": (
        (
            "a broker is unreachable",
            (
                "[2024-05-01 12:03:04,567] WARN [Producer clientId=producer-1] Connection to "
                "node 2 (kafka-2.kafka-headless.default.svc.cluster.local/10.1.2.3:9092) could "
                "not be established. Broker may not be available. "
                "(org.apache.kafka.clients.NetworkClient)",
                "[2024-05-01 12:04:04,001] WARN [Producer clientId=producer-7] Connection to "
                "node 0 (kafka-0.kafka-headless.default.svc.cluster.local/10.1.2.9:9092) could "
                "not be established. Broker may not be available. "
                "(org.apache.kafka.clients.NetworkClient)",
            ),
        ),
        (
            "records expire in the producer",
            (
                "org.apache.kafka.common.errors.TimeoutException: Expiring 12 record(s) for "
                "orders-3:120001 ms has passed since batch creation",
                "org.apache.kafka.common.errors.TimeoutException: Expiring 1 record(s) for "
                "orders-0:30000 ms has passed since batch creation",
            ),
        ),
    ),
    "elasticsearch": (
        (
            "a bulk request is rejected (JSON in any key order)",
            (
                '{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":'
                '"rejected execution of coordinating operation [coordinating_and_primary_bytes'
                "=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=49785, "
                'max_coordinating_and_primary_bytes=53687091]"}],"type":'
                '"es_rejected_execution_exception"},"status":429}',
                '{"status":429,"error":{"type":"es_rejected_execution_exception","root_cause":'
                '[{"reason":"rejected execution of coordinating operation '
                "[coordinating_and_primary_bytes=12, replica_bytes=0, all_bytes=12, "
                'coordinating_operation_bytes=1785, max_coordinating_and_primary_bytes=53687091]"'
                ',"type":"es_rejected_execution_exception"}]}}',
            ),
        ),
        (
            "the high disk watermark",
            (
                "[2024-05-01T12:03:04,567][WARN ][o.e.c.r.a.DiskThresholdMonitor] [es-node-1] "
                "high disk watermark [90%] exceeded on [Xk3bQ9aZR2u1p0VdL8mE7w][es-node-1]"
                "[/usr/share/elasticsearch/data/nodes/0] free: 4.2gb[8.1%], shards will be "
                "relocated away from this node",
                "[2024-05-02T00:00:01,002][WARN ][o.e.c.r.a.DiskThresholdMonitor] [es-node-3] "
                "high disk watermark [90%] exceeded on [p9Q2LmN4Tq6sYb1cV0xZ3a][es-node-3]"
                "[/usr/share/elasticsearch/data/nodes/0] free: 12.7gb[9.9%], shards will be "
                "relocated away from this node",
            ),
        ),
    ),
    "spark and yarn": (
        (
            "a container exceeds its memory",
            (
                "Container killed by YARN for exceeding memory limits. 10.4 GB of 10 GB "
                "physical memory used. Consider boosting spark.yarn.executor.memoryOverhead.",
                "Container killed by YARN for exceeding memory limits. 5.5 GB of 5.5 GB "
                "physical memory used. Consider boosting spark.yarn.executor.memoryOverhead.",
            ),
        ),
        (
            "a stage fails on a lost executor",
            (
                "org.apache.spark.SparkException: Job aborted due to stage failure: Task 3 in "
                "stage 12.0 failed 4 times, most recent failure: Lost task 3.3 in stage 12.0 "
                "(TID 456, ip-10-0-1-23.ec2.internal, executor 7): ExecutorLostFailure "
                "(executor 7 exited caused by one of the running tasks) Reason: Container "
                "marked as failed: container_1700000000000_0001_01_000008 on host: "
                "ip-10-0-1-23.ec2.internal. Exit status: 137.",
                "org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in "
                "stage 3.0 failed 4 times, most recent failure: Lost task 0.3 in stage 3.0 "
                "(TID 99, ip-10-0-7-5.ec2.internal, executor 2): ExecutorLostFailure "
                "(executor 2 exited caused by one of the running tasks) Reason: Container "
                "marked as failed: container_1700000000001_0042_01_000003 on host: "
                "ip-10-0-7-5.ec2.internal. Exit status: 137.",
            ),
        ),
        (
            "an application master fails",
            (
                "Application application_1700000000000_0042 failed 2 times due to AM "
                "Container for appattempt_1700000000000_0042_000002 exited with exitCode: 1",
                "Application application_1712345678901_0007 failed 2 times due to AM "
                "Container for appattempt_1712345678901_0007_000002 exited with exitCode: 13",
            ),
        ),
    ),
    "ray and dask": (
        (
            "Ray kills a task for memory",
            (
                "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low "
                "on memory. Memory on the node (IP: 10.0.0.5, ID: "
                "8f1c2d3e4b5a69788f1c2d3e4b5a69788f1c2d3e4b5a6978) where the task (task ID: "
                "16310a0f0a45af5cffffffffffffffffffffffff01000000, name=train, pid=4242, "
                "memory used=12.3GB) was running was 30.1GB / 31.4GB (0.958), which exceeds "
                "the memory usage threshold of 0.95.",
                "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low "
                "on memory. Memory on the node (IP: 10.0.0.9, ID: "
                "1a2b3c4d5e6f70811a2b3c4d5e6f70811a2b3c4d5e6f7081) where the task (task ID: "
                "c2668a65bda616c1ffffffffffffffffffffffff01000000, name=train, pid=17, memory "
                "used=9.9GB) was running was 29.8GB / 31.4GB (0.951), which exceeds the "
                "memory usage threshold of 0.95.",
            ),
        ),
        (
            "a Ray actor dies",
            (
                "ray.exceptions.RayActorError: The actor died unexpectedly before finishing "
                "this task. class_name: Trainer actor_id: 8a5f1e2d3c4b5a6978f1e2d301000000 "
                "pid: 4242 namespace: 1c2d3e4f-aaaa-bbbb-cccc-1234567890ab ip: 10.0.0.5",
                "ray.exceptions.RayActorError: The actor died unexpectedly before finishing "
                "this task. class_name: Trainer actor_id: f00df00d1234567890abcdef01000000 "
                "pid: 99 namespace: 9f8e7d6c-dddd-eeee-ffff-0987654321ba ip: 10.0.0.6",
            ),
        ),
        (
            "a Dask worker pauses",
            (
                "distributed.worker.memory - WARNING - Worker is at 81% memory usage. Pausing "
                "worker.  Process memory: 6.48 GiB -- Worker memory limit: 8.00 GiB",
                "distributed.worker.memory - WARNING - Worker is at 92% memory usage. Pausing "
                "worker.  Process memory: 14.71 GiB -- Worker memory limit: 16.00 GiB",
            ),
        ),
        (
            "Dask gives up on a task",
            (
                "KilledWorker: Attempted to run task ('read-parquet-8f1c2d3e4b5a6978', 3) on 3 "
                "different workers, but all those workers died while running it. The last "
                "worker that attempt to run the task was tcp://10.0.0.5:37139.",
                "KilledWorker: Attempted to run task ('read-parquet-1a2b3c4d5e6f7081', 17) on "
                "3 different workers, but all those workers died while running it. The last "
                "worker that attempt to run the task was tcp://10.0.0.8:40211.",
            ),
        ),
    ),
    "containers": (
        (
            "a port is taken",
            (
                "docker: Error response from daemon: driver failed programming external "
                "connectivity on endpoint web (3f1c2d3e4b5a69788f1c2d3e4b5a69788f1c2d3e4b5a6978"
                "8f1c2d3e4b5a6978): Bind for 0.0.0.0:8080 failed: port is already allocated.",
                "docker: Error response from daemon: driver failed programming external "
                "connectivity on endpoint web (9a8b7c6d5e4f30219a8b7c6d5e4f30219a8b7c6d5e4f3021"
                "9a8b7c6d5e4f3021): Bind for 0.0.0.0:8081 failed: port is already allocated.",
            ),
        ),
        (
            "an entry point may not run",
            (
                "failed to create shim task: OCI runtime create failed: runc create failed: "
                'unable to start container process: exec: "/app/run.sh": permission denied: '
                "unknown",
                "failed to create shim task: OCI runtime create failed: runc create failed: "
                'unable to start container process: exec: "/srv/entry.sh": permission denied: '
                "unknown",
            ),
        ),
    ),
    "alerts and events": (
        (
            "a Prometheus alert on a crash-looping pod",
            (
                "[FIRING:1] KubePodCrashLooping (api-7f9c8d-x2x4z prod warning) Pod "
                'prod/api-7f9c8d-x2x4z (api) is in waiting state (reason: "CrashLoopBackOff").',
                "[FIRING:3] KubePodCrashLooping (api-6b8d7c-q9w8e prod warning) Pod "
                'prod/api-6b8d7c-q9w8e (api) is in waiting state (reason: "CrashLoopBackOff").',
            ),
        ),
        (
            "a Prometheus alert in labels",
            (
                "alertname=HighErrorRate severity=critical instance=10.0.0.5:9100 job=node "
                'summary="Error rate is 12.5% for the last 5m"',
                "alertname=HighErrorRate severity=critical instance=node-7:9100 job=node "
                'summary="Error rate is 7.25% for the last 10m"',
            ),
        ),
        (
            "a Windows application crash",
            (
                "Faulting application name: app.exe, version: 1.2.3.4, time stamp: 0x5f1c2d3e "
                "Faulting module name: ntdll.dll, version: 10.0.19041.1202, time stamp: "
                "0xb5ced1c6 Exception code: 0xc0000005 Fault offset: 0x000000000004f2b3 "
                "Faulting process id: 0x1a2c",
                "Faulting application name: app.exe, version: 1.2.4.0, time stamp: 0x6a2b3c4d "
                "Faulting module name: ntdll.dll, version: 10.0.19041.1202, time stamp: "
                "0xb5ced1c6 Exception code: 0xc0000005 Fault offset: 0x00000000000a1b2c "
                "Faulting process id: 0x2f08",
            ),
        ),
    ),
    "traces": (
        (
            "Java: a null pointer, other line numbers",
            (
                'java.lang.NullPointerException: Cannot invoke "String.length()" because '
                '"name" is null\n\tat com.example.Svc.handle(Svc.java:42)\n\tat '
                "com.example.Main.main(Main.java:7)",
                'java.lang.NullPointerException: Cannot invoke "String.length()" because '
                '"name" is null\n\tat com.example.Svc.handle(Svc.java:57)\n\tat '
                "com.example.Main.main(Main.java:9)",
            ),
        ),
        (
            "Java: a pool rejects a task",
            (
                'Exception in thread "pool-1-thread-3" '
                "java.util.concurrent.RejectedExecutionException: Task "
                "java.util.concurrent.FutureTask@5e9f23b4 rejected from "
                "java.util.concurrent.ThreadPoolExecutor@7a81197d[Running, pool size = 8, "
                "active threads = 8, queued tasks = 100, completed tasks = 4521]",
                'Exception in thread "pool-2-thread-1" '
                "java.util.concurrent.RejectedExecutionException: Task "
                "java.util.concurrent.FutureTask@1b2c3d4e rejected from "
                "java.util.concurrent.ThreadPoolExecutor@9f8e7d6c[Running, pool size = 16, "
                "active threads = 16, queued tasks = 1000, completed tasks = 12]",
            ),
        ),
        (
            "Python: a connection refused, other paths and lines",
            (
                'Traceback (most recent call last):\n  File "/home/ci/.venv/lib/python3.11/'
                'site-packages/requests/adapters.py", line 486, in send\n    resp = '
                "conn.urlopen(\nrequests.exceptions.ConnectionError: HTTPConnectionPool("
                "host='10.0.0.5', port=8000): Max retries exceeded with url: /v1/run/42 "
                "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at "
                "0x7f3a2c1b4d90>: Failed to establish a new connection: [Errno 111] Connection "
                "refused'))",
                'Traceback (most recent call last):\n  File "/tmp/tmpa8f3k2/venv/lib/python3.12'
                '/site-packages/requests/adapters.py", line 519, in send\n    resp = '
                "conn.urlopen(\nrequests.exceptions.ConnectionError: HTTPConnectionPool("
                "host='api-3', port=8000): Max retries exceeded with url: /v1/run/7 (Caused by "
                "NewConnectionError('<urllib3.connection.HTTPConnection object at "
                "0x7f00aa11bb22>: Failed to establish a new connection: [Errno 111] Connection "
                "refused'))",
            ),
        ),
    ),
    "sql": (
        (
            "a unique key is violated",
            (
                'ERROR:  duplicate key value violates unique constraint "users_email_key"\n'
                "DETAIL:  Key (email)=(alice@example.com) already exists.",
                'ERROR:  duplicate key value violates unique constraint "users_email_key"\n'
                "DETAIL:  Key (email)=(bob7@example.org) already exists.",
            ),
        ),
        (
            "a deadlock",
            (
                "ERROR: deadlock detected DETAIL: Process 4242 waits for ShareLock on "
                "transaction 901234; blocked by process 4250.",
                "ERROR: deadlock detected DETAIL: Process 17 waits for ShareLock on "
                "transaction 77; blocked by process 18.",
            ),
        ),
    ),
    "http": (
        (
            "a 503 with request and trace ids",
            (
                "HTTP 503 Service Unavailable: upstream connect error (request-id: "
                "7f3a2c1b-4d90-4e5f-8a1b-2c3d4e5f6a7b, x-amzn-trace-id: "
                "Root=1-65f1c2d3-4b5a69788f1c2d3e4b5a6978)",
                "HTTP 503 Service Unavailable: upstream connect error (request-id: "
                "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d, x-amzn-trace-id: "
                "Root=1-66000000-aaaaaaaaaaaaaaaaaaaaaaaa)",
            ),
        ),
        (
            "a rate limit with a W3C traceparent",
            (
                "429 Too Many Requests: rate limited, retry after 30s (traceparent: "
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01)",
                "429 Too Many Requests: rate limited, retry after 7s (traceparent: "
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01)",
            ),
        ),
        (
            # Version 6: the body Python prints kept its quoted tokens as "<str>", so it signed
            # apart from the same body in JSON (and every key and value was one "<str>").
            "an overloaded API, its body as JSON or as Python prints it",
            (
                "anthropic.InternalServerError: Error code: 529 - {'type': 'error', 'error': "
                "{'type': 'overloaded_error', 'message': 'Overloaded'}}",
                'anthropic.InternalServerError: Error code: 529 - {"error": {"message": '
                '"Overloaded", "type": "overloaded_error"}, "type": "error"}',
            ),
        ),
        (
            "a bad request, its body as Python prints it",
            (
                "anthropic.BadRequestError: Error code: 400 - {'type': 'error', 'error': "
                "{'type': 'invalid_request_error', 'message': 'prompt is too long: 210012 "
                "tokens > 200000 maximum'}, 'request_id': 'req_011CU7s6'}",
                "anthropic.BadRequestError: Error code: 400 - {'type': 'error', 'error': "
                "{'type': 'invalid_request_error', 'message': 'prompt is too long: 200731 "
                "tokens > 200000 maximum'}, 'request_id': 'req_0aa9Q2'}",
            ),
        ),
    ),
    "aws": (
        (
            # Version 6: the user after "user/" was a word, so each user signed apart.
            "a user may not read an object",
            (
                "An error occurred (AccessDenied) when calling the GetObject operation: User: "
                "arn:aws:iam::123456789012:user/alice is not authorized to perform: "
                "s3:GetObject on resource: arn:aws:s3:::my-bucket/data/7.csv",
                "An error occurred (AccessDenied) when calling the GetObject operation: User: "
                "arn:aws:iam::210987654321:user/bob is not authorized to perform: "
                "s3:GetObject on resource: arn:aws:s3:::other-bucket/in.csv",
                "An error occurred (AccessDenied) when calling the GetObject operation: User: "
                "arn:aws:sts::123456789012:assumed-role/ci-runner/i-0abc123 is not authorized "
                "to perform: s3:GetObject on resource: arn:aws:s3:::my-bucket/data/9.csv",
            ),
        ),
    ),
    "kubernetes": (
        (
            # Version 6: "10d" was a number where "3d4h" was a duration.
            "a pod crash-loops, young or old",
            (
                "api-7f9c8d-x2x4z   0/1   CrashLoopBackOff   12 (3m ago)   10d",
                "api-6b8d7c-q9w8e   0/1   CrashLoopBackOff   3 (45s ago)   3d4h",
                "api-5c7d9b-k2m4p   0/1   CrashLoopBackOff   40 (5m ago)   2y45d",
            ),
        ),
    ),
    "values": (
        (
            "timestamps in many notations",
            (
                "job failed at Mon, 06 May 2024 12:03:04 GMT",
                "job failed at Tue, 14 Jan 2025 01:02:03 GMT",
            ),
        ),
        (
            "ids of many kinds",
            (
                "lease 01ARZ3NDEKTSV4RRFFQ69G5FAV expired",
                "lease 0ujtsYcgvSTl8PAuAdqWYSMnLOv expired",
                "lease 7f3a2c1b-4d90-4e5f-8a1b-2c3d4e5f6a7b expired",
                "lease 0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D expired",
            ),
        ),
        (
            "a checksum mismatch",
            (
                "checksum mismatch: expected sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0"
                "b822cd15d6c15b0f00a08 got sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483b"
                "fa0f98a5e886266e7ae",
                "checksum mismatch: expected sha256:1111111111111111111111111111111111111111111"
                "111111111111111111111 got sha256:a3bf4f1b2b0b822cd15d6c15b0f00a089f86d081884c7"
                "d659a2feaa0c55ad015",
            ),
        ),
        (
            "a disk fills",
            (
                "write /tmp/tmpx8k2_q1a.json failed: No space left on device (wrote 1.5GiB of "
                "2GiB, 93% used, after 1h2m3.5s)",
                "write /var/folders/q1/abc_123/T/tmp7yq0.json failed: No space left on device "
                "(wrote 512MiB of 2GiB, 100% used, after 450ms)",
                "write /tmp/tmp0a1b2c3d.json failed: No space left on device (wrote 12.25 GiB "
                "of 16 GiB, 99.5 % used, after 2h)",
            ),
        ),
    ),
}

CLASSES = failure_params(FAILURES)


@pytest.mark.parametrize("texts", CLASSES)
def test_the_texts_of_one_failure_share_a_signature_that_is_its_own(
    texts: tuple[str, ...],
) -> None:
    assert_one_signature(texts)
    assert_own_signatures(texts)


def test_no_two_failures_share_a_signature() -> None:
    assert merged_failures(FAILURES) == []


# Version 7, rule by rule: each case below was signed otherwise by version 6.


def test_version_7_signs_an_address_as_a_value_like_a_number() -> None:
    hosts = ("node12", "10.0.0.12", "db3.example.com", "db.example.com", "[2001:db8::1]:22")
    assert {canonical_signature(f"ssh: connect to host {h} failed") for h in hosts} == {
        "ssh: connect to host <n> failed"
    }
    # A host that is a word stays a word (see the limits).
    assert canonical_signature("connect to host localhost failed") == (
        "connect to host localhost failed"
    )
    # "file.c:12:5" reads as a host and its port once the port and column are "<n>": one
    # value, as "src/file.c:12:5" is one path, and a signature is its own signature.
    assert canonical_signature("main.c:12:5: error: x") == "<n>: error: x"
    assert canonical_signature("<n>: error: x") == "<n>: error: x"


def test_version_7_drops_an_address_in_brackets_after_a_value() -> None:
    by_name = 'connection to server at "db.example.com" (10.0.0.5), port 5432 failed'
    by_address = 'connection to server at "10.0.0.5", port 5432 failed'
    assert (
        canonical_signature(by_name)
        == canonical_signature(by_address)
        == ("connection to server at <str>, port <n> failed")
    )
    # A bracket that holds words, or follows a word, stays.
    assert canonical_signature("attempt to connect to 127.0.0.1:8080 (localhost) failed") == (
        "attempt to connect to <n> (localhost) failed"
    )
    assert canonical_signature("interface en (10.0.0.1) up") == "interface en (<*>) up"


@pytest.mark.parametrize("age", ["8d", "10d", "364d", "3y", "2y45d"])
def test_version_7_takes_an_age_standing_alone_as_a_duration(age: str) -> None:
    assert canonical_signature(f"pod api-1 age {age}") == "pod <n> age <time>"
    assert canonical_signature(f"rate(errors[{age}]) too high") == "rate(errors[<time>]) too high"
    assert canonical_signature(f"cert expires in {age}.") == "cert expires in <time>."


def test_a_number_glued_to_d_that_is_no_age_stays_a_number() -> None:
    # First in a text (a log line's sequence number or id), glued to a word, "@" or "0x", or
    # followed by more of a token: hexadecimal, not an age.
    assert canonical_signature("0000000d Creating NT transaction") == "<n> Creating NT transaction"
    assert canonical_signature("Event@7317849d fired") == "Event@<n> fired"
    assert canonical_signature("code 0x1d at 12d5 and 3d-x") == "code <n> at <n> and <n>"
    # An upper-case "D" is no age: Windows prints HRESULTs and status codes that way.
    assert canonical_signature("failed with 8007000D") == "failed with <n>"


def test_a_hex_value_that_ends_in_d_mid_text_is_an_age_by_design() -> None:
    # The trade-off of the rule above (docs/signatures.md, "Limits"): with its digits zeroed,
    # whatever their number, a hexadecimal value of digits and a final "d" standing alone is
    # the text of an age, so one in sixteen zero-padded counters signs apart from its
    # neighbours there.
    assert canonical_signature("transaction 0000000d failed") == "transaction <time> failed"
    assert canonical_signature("transaction 0000000e failed") == "transaction <n> failed"


def test_version_7_reads_a_dictionary_python_prints_as_json() -> None:
    python = "{'error': {'type': 'overloaded_error', 'retry': True, 'n': 2, 'ids': (1, 'a7')}}"
    as_json = '{"error": {"ids": [1, "a7"], "n": 2, "retry": true, "type": "overloaded_error"}}'
    assert (
        canonical_signature(python)
        == canonical_signature(as_json)
        == ("{error: {ids: [<*>], n: <n>, retry: true, type: overloaded_error}}")
    )
    # Another error type is another failure, as in JSON.
    assert canonical_signature("{'error': 'timeout'}") != canonical_signature(
        "{'error': 'forbidden'}"
    )
    # A string holding a quote, a brace or an escape is read as Python reads it.
    assert canonical_signature("""{'msg': "can't", 'at': '{x}', 'p': 'a\\d'}""") == (
        "{at: <str>, msg: can't, p: a\\d}"
    )


@pytest.mark.parametrize(
    "text",
    [
        "{'a': 1",  # not closed
        "{'a': f(1)}",  # a call: literal_eval evaluates nothing
        "{'a' 1}",  # not Python
        "{'a': {1, 2}, 'b': None}",  # a set is read, in sorted order
        "x = {'a': [" * 40 + "]}" * 40,  # deep
    ],
)
def test_a_text_that_only_looks_like_a_python_dictionary_signs_without_error(text: str) -> None:
    signature = canonical_signature(text)
    assert canonical_signature(signature) == signature


def test_after_a_python_dictionary_that_does_not_read_no_other_is_tried() -> None:
    # Each try scans in Python; a text of many unclosed "{'" must not pay it at each.
    assert canonical_signature("e {'a': 1} and {'b': f(2)} and {'c': 3}") == (
        "e {a: <n>} and {<str>: f(<n>)} and {<str>: <n>}"
    )


def test_version_7_takes_a_compound_name_with_a_value_as_one() -> None:
    for arn in (
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::123456789012:user/ops/bob",
        "arn:aws:sts::123456789012:assumed-role/deployer/botocore-session-1700000000",
        "arn:aws:lambda:us-east-1:123456789012:function:resize",
        "arn:aws:s3:::my-bucket/key.csv",
    ):
        assert canonical_signature(f"User: {arn} is not authorized.") == (
            "User: <url> is not authorized."
        ), arn
    # Names of code stay: an Objective-C selector (no value), a C++ or Rust path ("::").
    selector = "-[X observeValueForKeyPath:ofObject:change:context:] failed"
    assert canonical_signature(selector) == selector
    assert canonical_signature("in std::io::fs::File::open failed") == (
        "in std::io::fs::File::open failed"
    )
    # Colons before a space separate words.
    assert canonical_signature("error: a: b: c: 7 failed") == "error: a: b: c: <n> failed"


def test_version_7_takes_a_percent_sign_after_a_space_as_its_numbers() -> None:
    # Formatters write "93.5 %" or "93.5%" for one value.
    assert canonical_signature("disk at 93.5 % of 2GiB") == canonical_signature(
        "disk at 9% of 2GiB"
    )
    assert canonical_signature("disk at 93.5 %") == "disk at <n>%"
    # A format directive after a number stays.
    assert canonical_signature("wrote 5 %s and 6 %d") == "wrote <n> %s and <n> %d"


# The property form, with the volatile values of test_signature_ecosystems.py and a few more.

LETTERS = string.ascii_lowercase
MORE: dict[str, st.SearchStrategy[str]] = {
    # a host as it is written: a short name with a digit, an IP, a domain name
    "anyhost": st.one_of(
        st.tuples(
            st.sampled_from(["node", "worker-", "gpu", "db", "ip-10-0-3-"]), st.integers(0, 999)
        ).map(lambda t: f"{t[0]}{t[1]}"),
        VOLATILE["ipv4"],
        VOLATILE["ipv6"],
        st.sampled_from(["db.example.com", "db03.prod.example.net", "redis-0.svc.cluster.local"]),
    ),
    # kubectl's ages of every size, 8 days and more and years too
    "anyage": st.one_of(
        st.integers(1, 119).map(lambda s: f"{s}s"),
        st.integers(10, 179).map(lambda m: f"{m}m"),
        st.tuples(st.integers(2, 7), st.integers(1, 23)).map(lambda t: f"{t[0]}d{t[1]}h"),
        st.integers(8, 729).map(lambda d: f"{d}d"),
        st.tuples(st.integers(2, 7), st.integers(0, 364)).map(
            lambda t: f"{t[0]}y{t[1]}d" if t[1] else f"{t[0]}y"
        ),
    ),
    "account": st.integers(10**11, 10**12 - 1).map(str),
    "bucket": st.text(LETTERS + string.digits + "-", min_size=3, max_size=20).filter(
        lambda s: s[0] not in "-" and s[-1] != "-"
    ),
    # libpq's host: a name with its address in brackets, or an address
    "pghost": st.one_of(
        st.tuples(
            st.sampled_from(["db", "pg-1", "db.example.com", "pg.internal"]), VOLATILE["ipv4"]
        ).map(lambda t: f'"{t[0]}" ({t[1]})'),
        VOLATILE["ipv4"].map(lambda a: f'"{a}"'),
    ),
}
STRATEGIES = {**VOLATILE, **MORE}

#: ecosystem -> templates; ``{kind}`` is a hole filled from ``STRATEGIES[kind]``.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "hosts": (
        "ssh: connect to host {anyhost} port {port}: Connection refused",
        "psycopg2.OperationalError: connection to server at {pghost}, port {port} failed: "
        "FATAL:  remaining connection slots are reserved",
    ),
    "kubernetes": ("{pod}   0/1     CrashLoopBackOff   {count} ({anyage} ago)   {anyage}",),
    "aws": (
        "User: arn:aws:iam::{account}:user/{user} is not authorized to perform: s3:PutObject "
        "on resource: arn:aws:s3:::{bucket}/{bucket}.parquet because no identity-based policy "
        "allows the s3:PutObject action",
    ),
    "python literal": (
        "Error code: {count} - {{'type': 'error', 'error': {{'type': 'rate_limit_error', "
        "'message': 'Number of request tokens has exceeded your per-minute rate limit'}}, "
        "'request_id': '{reqid}'}}",
    ),
    "platforms": (
        # An IPv6 address right before a colon is not taken (see the limits): the host is last.
        "[{iso}] ERROR Executor: java.lang.OutOfMemoryError: Java heap space in task {line}.0 "
        "in stage {count}.0 (TID {pid}) on {anyhost}",
        '{syslog} {anyhost} dockerd[{pid}]: time="{iso}" level=error msg="Handler for POST '
        '/v1.43/containers/{sha}/start returned error: failed to set up container networking"',
    ),
}
TEMPLATE_CASES = template_params(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATE_CASES)
def test_any_volatile_values_in_a_template_give_one_signature(template: str) -> None:
    assert_fillings_share_a_signature(template, STRATEGIES)
