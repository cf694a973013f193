"""``canonical_signature`` on failure texts of operations: hosts, ages and JSON error bodies.

``test_signature_ecosystems.py`` covers languages and their tools, ``test_signature_services.py``
the services around them. This module holds what version 5 still signed apart or together
wrongly, and failure texts of ecosystems neither holds in these forms: PostgreSQL and MySQL
server errors, the kernel's OOM killer and segfault lines, JVM, Go, Rust, .NET and Node
failures with stack frames and addresses, Terraform with AWS request ids and ARNs, Airflow,
Celery and Slurm job failures, GCP and Azure SDK errors, the Kubernetes scheduler and kubectl's
columns. The texts were written for this test from how each of them words a failure (no public
log dataset was used), in the two kinds of case of ``test_signature_ecosystems.py``:

* ``FAILURES``: the texts of one failure differ only in what varies between two occurrences
  and must share one signature; two failures must not;
* ``TEMPLATES``: failure texts with holes that Hypothesis fills from one strategy of volatile
  values each; any two fillings must share a signature.

Signature version 6 comes from these texts; ``test_version_6_*`` below names each of its rules
with the case that version 5 signed apart (or together).
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
            # Version 5: "db03.example.com" was "<n>", "db.example.com" "<addr>".
            "lookup of a database host fails",
            (
                "dial tcp: lookup db03.prod.example.com on 10.96.0.10:53: no such host",
                "dial tcp: lookup db.prod.example.com on 10.96.0.10:53: no such host",
                "dial tcp: lookup ip-10-0-3-17.ec2.internal on 10.96.0.10:53: no such host",
                "dial tcp: lookup 10.0.3.17 on 10.96.0.10:53: no such host",
            ),
        ),
        (
            "connection to a host refused",
            (
                'psql: error: connection to server at "db03.example.com" (10.0.3.17), port '
                "5432 failed: Connection refused",
                'psql: error: connection to server at "db.example.com" (10.0.3.9), port 5432 '
                "failed: Connection refused",
            ),
        ),
        (
            "host unreachable, bare or with a port",
            (
                "ERROR: could not reach worker-3.build.internal after 5 attempts",
                "ERROR: could not reach build.internal after 2 attempts",
                "ERROR: could not reach worker-3.build.internal:8080 after 5 attempts",
            ),
        ),
        (
            # Java's InetAddress prints "name/address"; the name has a digit or not.
            "JVM socket timeout",
            (
                "java.net.SocketTimeoutException: connect timed out to "
                "node-17.cluster.example.com/10.1.2.3:9000",
                "java.net.SocketTimeoutException: connect timed out to "
                "namenode.cluster.example.com/10.1.2.4:9000",
            ),
        ),
    ),
    "kubernetes": (
        (
            # Version 5: "3d4h" was "<n>", "12h" and "5m30s" "<time>".
            "crash loop, any age",
            (
                "web-7d9f8c6b5-x2k4z   0/1     CrashLoopBackOff   12 (3m2s ago)   3d4h",
                "web-6c8b9d7f4-q9w8e   0/1     CrashLoopBackOff   5 (45s ago)   12h",
                "web-6c8b9d7f4-q9w8e   0/1     CrashLoopBackOff   5 (2d3h ago)   5m30s",
            ),
        ),
        (
            "back-off event",
            (
                "Warning  BackOff  2m (x14 over 8m)  kubelet  Back-off restarting failed container",
                "Warning  BackOff  3d4h (x1401 over 6d2h)  kubelet  Back-off restarting failed "
                "container",
            ),
        ),
        (
            "unschedulable pod",
            (
                "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint "
                "{node-role.kubernetes.io/control-plane: }. preemption: 0/5 nodes are "
                "available: 5 Preemption is not helpful for scheduling.",
                "0/12 nodes are available: 9 Insufficient cpu, 3 node(s) had untolerated taint "
                "{node-role.kubernetes.io/control-plane: }. preemption: 0/12 nodes are "
                "available: 12 Preemption is not helpful for scheduling.",
            ),
        ),
        (
            "unschedulable for memory",
            (
                "0/5 nodes are available: 5 Insufficient memory. preemption: 0/5 nodes are "
                "available: 5 Preemption is not helpful for scheduling.",
            ),
        ),
    ),
    "json error bodies": (
        (
            # Version 5 rendered every JSON string as "<str>": the error word was lost.
            "request timed out",
            (
                'upstream failed: {"error":"timeout","request_id":"a81f0c2e9d"}',
                'upstream failed: {"request_id":"5b3e77aa01","error":"timeout"}',
            ),
        ),
        (
            "request forbidden",
            ('upstream failed: {"error":"forbidden","request_id":"a81f0c2e9d"}',),
        ),
        (
            "job still pending",
            ('wait timed out: {"job":"j-8812","status":"pending","elapsed":"300s"}',),
        ),
        (
            "job still running",
            (
                'wait timed out: {"job":"j-8812","status":"running","elapsed":"300s"}',
                'wait timed out: {"status":"running","job":"j-17","elapsed":"1m30s"}',
            ),
        ),
        (
            "GCP permission denied",
            (
                '{"error": {"code": 403, "message": "Permission \'storage.objects.get\' denied '
                'on resource (or it may not exist).", "status": "PERMISSION_DENIED"}}',
                '{"error": {"status": "PERMISSION_DENIED", "code": 403, "message": "Permission '
                "'storage.objects.get' denied on resource (or it may not exist).\"}}",
            ),
        ),
        (
            "GCP not found",
            (
                '{"error": {"code": 404, "message": "Permission \'storage.objects.get\' denied '
                'on resource (or it may not exist).", "status": "NOT_FOUND"}}',
            ),
        ),
        (
            "structured log line of one failure",
            (
                '{"level":"error","ts":"2024-03-02T10:11:12.345Z","caller":"worker/run.go:88",'
                '"msg":"job failed","job_id":"7f3a9c1e","attempt":3,"error":"context deadline '
                'exceeded","host":"worker-7.prod.example.com"}',
                '{"ts":"2024-05-12T00:01:02Z","level":"error","msg":"job failed","caller":'
                '"worker/run.go:91","job_id":"0b1c2d3e","attempt":1,"error":"context deadline '
                'exceeded","host":"worker.prod.example.com"}',
            ),
        ),
        (
            # Go's encoding/json escapes "<", ">" and "&": version 5 could not parse the object
            # once the escapes' digits were zeroed, and key order split the failure.
            "Go structured log line with escaped characters",
            (
                '{"level":"error","msg":"want \\u003cnil\\u003e, got \\u0026errors.errorString'
                '{s:\\"eof\\"}","req":"9f1c2a"}',
                '{"req":"0b7e55","level":"error","msg":"want \\u003cnil\\u003e, got '
                '\\u0026errors.errorString{s:\\"eof\\"}"}',
            ),
        ),
        (
            "structured log line of another failure",
            (
                '{"level":"error","ts":"2024-03-02T10:11:12.345Z","caller":"worker/run.go:88",'
                '"msg":"job failed","job_id":"7f3a9c1e","attempt":3,"error":"context canceled",'
                '"host":"worker-7.prod.example.com"}',
            ),
        ),
    ),
    "database servers": (
        (
            "duplicate key",
            (
                'ERROR:  duplicate key value violates unique constraint "orders_pkey"\nDETAIL:  '
                "Key (id)=(42) already exists.",
                'ERROR:  duplicate key value violates unique constraint "orders_pkey"\nDETAIL:  '
                "Key (id)=(97) already exists.",
            ),
        ),
        (
            "not-null violated",
            (
                'ERROR:  null value in column "id" of relation "orders" violates not-null '
                "constraint",
            ),
        ),
        (
            "MySQL deadlock",
            (
                "ERROR 1213 (40001) at line 12: Deadlock found when trying to get lock; try "
                "restarting transaction",
                "ERROR 1213 (40001) at line 7: Deadlock found when trying to get lock; try "
                "restarting transaction",
            ),
        ),
    ),
    "the kernel": (
        (
            "OOM killer",
            (
                "Out of memory: Killed process 12345 (python3) total-vm:12345678kB, "
                "anon-rss:8765432kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:17000kB "
                "oom_score_adj:0",
                "Out of memory: Killed process 999 (python3) total-vm:2345678kB, "
                "anon-rss:765432kB, file-rss:4kB, shmem-rss:0kB, UID:1001 pgtables:1700kB "
                "oom_score_adj:0",
            ),
        ),
        (
            "segfault in libc",
            (
                "kernel: python3[12345]: segfault at 0 ip 00007f3a2b1c4d5e sp 00007ffc1a2b3c40 "
                "error 4 in libc.so.6[7f3a2b000000+195000]",
                "kernel: python3[77]: segfault at 8 ip 00007f11aa22bb33 sp 00007ffd00112233 error "
                "4 in libc.so.6[7f11aa000000+195000]",
            ),
        ),
    ),
    "runtimes": (
        (
            "JVM heap exhausted",
            (
                "java.lang.OutOfMemoryError: Java heap space\n\tat java.base/java.util.Arrays."
                "copyOf(Arrays.java:3512)\n\tat com.acme.Loader.load(Loader.java:88)",
                "java.lang.OutOfMemoryError: Java heap space\n\tat java.base/java.util.Arrays."
                "copyOf(Arrays.java:3537)\n\tat com.acme.Loader.load(Loader.java:91)",
            ),
        ),
        ("JVM metaspace exhausted", ("java.lang.OutOfMemoryError: Metaspace",)),
        (
            "Go nil dereference",
            (
                "panic: runtime error: invalid memory address or nil pointer dereference\n"
                "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a5b2c]\n\n"
                "goroutine 1 [running]:\nmain.run(0xc000012345)\n\t/src/app/main.go:42 +0x1d",
                "panic: runtime error: invalid memory address or nil pointer dereference\n"
                "[signal SIGSEGV: segmentation violation code=0x1 addr=0x8 pc=0x4a7f00]\n\n"
                "goroutine 17 [running]:\nmain.run(0xc0000aa000)\n\t/src/app/main.go:45 +0x2f",
            ),
        ),
        (
            "Rust unwrap on a missing file",
            (
                "thread 'main' panicked at src/main.rs:10:5:\ncalled `Result::unwrap()` on an "
                '`Err` value: Os { code: 2, kind: NotFound, message: "No such file or '
                'directory" }',
                "thread 'main' panicked at src/main.rs:14:9:\ncalled `Result::unwrap()` on an "
                '`Err` value: Os { code: 2, kind: NotFound, message: "No such file or '
                'directory" }',
            ),
        ),
        (
            ".NET empty sequence",
            (
                "Unhandled exception. System.InvalidOperationException: Sequence contains no "
                "elements\n   at System.Linq.ThrowHelper.ThrowNoElementsException()\n   at "
                "Acme.Program.Main(String[] args) in C:\\src\\Acme\\Program.cs:line 12",
                "Unhandled exception. System.InvalidOperationException: Sequence contains no "
                "elements\n   at System.Linq.ThrowHelper.ThrowNoElementsException()\n   at "
                "Acme.Program.Main(String[] args) in D:\\a\\1\\s\\Acme\\Program.cs:line 19",
            ),
        ),
        (
            "Node undefined property",
            (
                "TypeError: Cannot read properties of undefined (reading 'map')\n    at render "
                "(/app/dist/main.js:1:23456)\n    at process.processTicksAndRejections "
                "(node:internal/process/task_queues:95:5)",
                "TypeError: Cannot read properties of undefined (reading 'map')\n    at render "
                "(/app/dist/main.js:1:7890)\n    at process.processTicksAndRejections "
                "(node:internal/process/task_queues:96:5)",
            ),
        ),
    ),
    "infrastructure": (
        (
            "Terraform: no capacity",
            (
                "Error: creating EC2 Instance: operation error EC2: RunInstances, https response "
                "error StatusCode: 400, RequestID: 5e7b1a2c-1111-2222-3333-444455556666, api "
                "error InsufficientInstanceCapacity: We currently do not have sufficient "
                "p4d.24xlarge capacity in the Availability Zone you requested (us-east-1a).",
                "Error: creating EC2 Instance: operation error EC2: RunInstances, https response "
                "error StatusCode: 400, RequestID: 0a0b0c0d-aaaa-bbbb-cccc-ddddeeeeffff, api "
                "error InsufficientInstanceCapacity: We currently do not have sufficient "
                "p4d.24xlarge capacity in the Availability Zone you requested (us-east-1b).",
            ),
        ),
        (
            "AWS: access denied",
            (
                "An error occurred (AccessDenied) when calling the PutObject operation: User: "
                "arn:aws:sts::123456789012:assumed-role/ci-runner/i-0abc123def4567890 is not "
                "authorized to perform: s3:PutObject on resource: "
                "arn:aws:s3:::acme-artifacts/builds/42/out.tar.gz",
                "An error occurred (AccessDenied) when calling the PutObject operation: User: "
                "arn:aws:sts::210987654321:assumed-role/ci-runner/i-0fed987cba6543210 is not "
                "authorized to perform: s3:PutObject on resource: "
                "arn:aws:s3:::acme-artifacts/builds/43/out.tar.gz",
            ),
        ),
        (
            "GCP quota",
            (
                "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for quota "
                "metric 'Requests' and limit 'Requests per minute' of service "
                "'aiplatform.googleapis.com' for consumer 'project_number:123456789012'.",
                "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for quota "
                "metric 'Requests' and limit 'Requests per minute' of service "
                "'aiplatform.googleapis.com' for consumer 'project_number:987654321'.",
            ),
        ),
        (
            # A registry host with digits or without: one "<addr>" (version 5: "<n>" against
            # "registry.example.com").
            "image push denied",
            (
                "denied: requested access to the resource is denied: push to "
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/api:1.2.3",
                "denied: requested access to the resource is denied: push to "
                "registry.example.com/api:2.0.0",
            ),
        ),
        (
            "Helm: release name in use",
            ("Error: INSTALLATION FAILED: cannot re-use a name that is still in use",),
        ),
    ),
    "job schedulers": (
        (
            "Airflow task timeout",
            (
                "[2024-03-02, 10:11:12 UTC] {taskinstance.py:2699} ERROR - Task failed with "
                "exception\nairflow.exceptions.AirflowTaskTimeout: Timeout, PID: 4242",
                "[2024-05-12, 00:01:02 UTC] {taskinstance.py:2731} ERROR - Task failed with "
                "exception\nairflow.exceptions.AirflowTaskTimeout: Timeout, PID: 77",
            ),
        ),
        (
            "Celery task lost its broker",
            (
                "Task tasks.ingest[4f1c2d3e-aaaa-4bbb-8ccc-123456789abc] raised unexpected: "
                "ConnectionError('Error 111 connecting to redis:6379. Connection refused.')",
                "Task tasks.ingest[0a1b2c3d-dddd-4eee-8fff-abcdefabcdef] raised unexpected: "
                "ConnectionError('Error 111 connecting to redis:6379. Connection refused.')",
            ),
        ),
        (
            "Slurm time limit",
            (
                "slurmstepd: error: *** JOB 123456 ON node042 CANCELLED AT 2024-03-02T10:11:12 "
                "DUE TO TIME LIMIT ***",
                "slurmstepd: error: *** JOB 99 ON gpu-a100-07 CANCELLED AT 2024-05-12T00:01:02 "
                "DUE TO TIME LIMIT ***",
            ),
        ),
        (
            "Slurm preemption",
            (
                "slurmstepd: error: *** JOB 123456 ON node042 CANCELLED AT 2024-03-02T10:11:12 "
                "DUE TO PREEMPTION ***",
            ),
        ),
    ),
    "training and native code": (
        (
            "CUDA out of memory",
            (
                "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.59 GiB "
                "total capacity; 35.12 GiB already allocated; 1.50 GiB free; 36.00 GiB reserved "
                "in total by PyTorch)",
                "RuntimeError: CUDA out of memory. Tried to allocate 512.00 MiB (GPU 3; 79.15 GiB "
                "total capacity; 77.01 GiB already allocated; 300.12 MiB free; 78.00 GiB reserved "
                "in total by PyTorch)",
            ),
        ),
        (
            "NCCL system error",
            (
                "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/"
                "c10d/ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO "
                "for details), NCCL version 2.19.3",
                "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/"
                "c10d/ProcessGroupNCCL.cpp:2006, unhandled system error (run with NCCL_DEBUG=INFO "
                "for details), NCCL version 2.20.5",
            ),
        ),
        (
            "Slurm step out of memory",
            (
                "srun: error: node017: task 3: Out Of Memory",
                "srun: error: gpu-a100-07: task 0: Out Of Memory",
            ),
        ),
        (
            "use after free",
            (
                "==12345==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010 "
                "at pc 0x55d5c5a4b1e2 bp 0x7ffd5e9b7a10 sp 0x7ffd5e9b7a08\nREAD of size 4 at "
                "0x602000000010 thread T0\n    #0 0x55d5c5a4b1e1 in main /src/a.c:7:10",
                "==999==ERROR: AddressSanitizer: heap-use-after-free on address 0x60b0000000f0 at "
                "pc 0x5612aa0011e2 bp 0x7ffc00000a10 sp 0x7ffc00000a08\nREAD of size 8 at "
                "0x60b0000000f0 thread T3\n    #0 0x5612aa0011e1 in main /src/a.c:9:3",
            ),
        ),
        (
            "Rust backtrace of one panic",
            (
                "   0: std::panicking::begin_panic\n   1: app::main\n             at "
                "./src/main.rs:4:5\n   2: core::ops::function::FnOnce::call_once\n             at "
                "/rustc/90c541806f23a127002de5b4038be731ba1458ca/library/core/src/ops/"
                "function.rs:250:5",
                "   0: std::panicking::begin_panic\n   1: app::main\n             at "
                "./src/main.rs:9:5\n   2: core::ops::function::FnOnce::call_once\n             at "
                "/rustc/82e1608dfa6e0b5569232559e3d385fea5a93112/library/core/src/ops/"
                "function.rs:250:5",
            ),
        ),
    ),
    "more operations": (
        (
            # Version 5 read a UNC path as words and numbers (\\<n>\builds\<n>\out.log).
            "a network share denies access",
            (
                "robocopy: ERROR 5 (0x00000005) Copying File \\\\fs01\\builds\\run7\\out.log "
                "Access is denied.",
                "robocopy: ERROR 5 (0x00000005) Copying File \\\\fileserver\\builds\\run\\out.log "
                "Access is denied.",
                "robocopy: ERROR 5 (0x00000005) Copying File C:\\builds\\run7\\out.log Access "
                "is denied.",
            ),
        ),
        (
            "MySQL lock wait timeout",
            ("ERROR 1205 (HY000): Lock wait timeout exceeded; try restarting transaction",),
        ),
        (
            "kubectl: not found",
            (
                'Error from server (NotFound): pods "web-7d9f8c6b5-x2k4z" not found',
                'Error from server (NotFound): pods "web-6c8b9d7f4-q9w8e" not found',
            ),
        ),
        ("kubectl: forbidden", ('Error from server (Forbidden): pods "web-1" is forbidden',)),
        (
            "liveness probe timed out",
            (
                'Liveness probe failed: Get "http://10.244.1.17:8080/healthz": context deadline '
                "exceeded (Client.Timeout exceeded while awaiting headers)",
                'Liveness probe failed: Get "http://10.244.3.5:8080/healthz": context deadline '
                "exceeded (Client.Timeout exceeded while awaiting headers)",
            ),
        ),
        (
            "Airflow task killed externally",
            (
                "Executor reports task instance <TaskInstance: etl_daily.load "
                "scheduled__2024-03-02T00:00:00+00:00 [queued]> finished (failed) although the "
                "task says it's queued. (Info: None) Was the task killed externally?",
                "Executor reports task instance <TaskInstance: etl_daily.load "
                "manual__2024-05-12T10:11:12.123456+00:00 [queued]> finished (failed) although "
                "the task says it's queued. (Info: None) Was the task killed externally?",
            ),
        ),
        (
            "GitHub Actions job over its time limit",
            (
                "##[error]The job running on runner GitHub Actions 17 has exceeded the maximum "
                "execution time of 360 minutes.",
                "##[error]The job running on runner GitHub Actions 2 has exceeded the maximum "
                "execution time of 60 minutes.",
            ),
        ),
        (
            "logfmt line of a failed job",
            (
                'level=error ts=2024-03-02T10:11:12.345Z caller=main.go:88 msg="job failed" '
                'job=ingest-7 err="context deadline exceeded" duration=1m30.5s',
                'level=error ts=2024-05-12T00:01:02Z caller=main.go:91 msg="job failed" '
                'job=ingest-12 err="context deadline exceeded" duration=45.1s',
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


# Version 6, rule by rule: each case below was signed otherwise by version 5.


def test_version_6_takes_a_host_name_with_a_digit_as_an_address() -> None:
    for host in (
        "db03.example.com",
        "ip-10-0-3-17.ec2.internal",
        "redis-0.redis-headless.default.svc.cluster.local",
        "api.db3.example.co.uk",
        "MSRA-SA-41.fareast.corp.example.com",
        "db.example.com",
    ):
        assert canonical_signature(f"lost connection to {host}") == "lost connection to <n>"
    # "name/address", as Java prints a resolved host, is two addresses; a name before a "/"
    # and a word is an address too.
    assert canonical_signature("at node-7.example.com/10.1.2.3:9000") == "at <n>/<n>"
    assert canonical_signature("see github.com/acme and node3.example.com/acme") == (
        "see <n>/acme and <n>/acme"
    )
    # A dotted number that ends in a domain's letters but goes on is a number; a name without
    # a generic top-level domain is one too, with a digit, and a word without one.
    assert canonical_signature("see e2e.local.dir") == "see <n>"
    assert canonical_signature("reach worker-7.prod") == "reach <n>"
    assert canonical_signature("reach worker.prod") == "reach worker.prod"
    # A mailbox after a number's ".com" is not cut.
    assert canonical_signature("from 40163.com@p28-contacts.icloud") == "from <n>@<n>"


def test_version_6_takes_a_day_count_before_another_unit_as_a_duration() -> None:
    for age in ("3d4h", "2d", "1d2h3m4s", "12h", "5m30s", "45s"):
        # A lone "2d" was a number in version 6; an age standing alone is one since version 7.
        assert canonical_signature(f"age {age}") == "age <time>"
    # A lone "d" after a number that starts the text or is glued to a word is as often
    # hexadecimal: it stays a number (mid-text, see test_version_7_*).
    assert canonical_signature("0000000d Creating NT transaction") == (
        canonical_signature("0000000e Creating NT transaction")
    )
    assert canonical_signature("Event@7317849d") == "Event@<n>"
    # Hexadecimal after "d" (no unit) is not a duration.
    assert canonical_signature("id 3d4e") == "id <n>"


def test_version_6_masks_a_json_string_as_the_text_it_holds() -> None:
    # Its quotes are syntax: a word stays a word, an id is a number, a phrase keeps its words.
    assert canonical_signature('{"error":"timeout","request_id":"a81f0c"}') == (
        "{error: timeout, request_id: <n>}"
    )
    assert canonical_signature('{"status":"pending"}') != canonical_signature(
        '{"status":"running"}'
    )
    assert canonical_signature('{"msg":"disk /dev/sda1 full at 99%","at":"10:11:12"}') == (
        "{at: <time>, msg: disk <path> full at <n>%}"
    )
    # An empty string, and one holding a brace, are "<str>"; a word inside quotes in the
    # string is quoted as in any text.
    assert canonical_signature('{"a":"","b":"{x}","c":"no \'x\' here"}') == (
        "{a: <str>, b: <str>, c: no <str> here}"
    )
    # A Python literal was not JSON: its quoted single tokens were "<str>"; since version 7 it
    # is read as the JSON it stands for (test_version_7_*).
    assert canonical_signature("{'error': 'timeout'}") == "{error: timeout}"


def test_version_6_reads_json_with_escaped_characters() -> None:
    # "\u003c" is "\u000c" once its digits are zeroed, and "\u0c" once digit runs are
    # collapsed for the JSON parser: no escape at all. In a text with a brace, each escape is
    # "?" first.
    first = '{"msg":"expected \\u003cnil\\u003e","id":"a1"}'
    second = '{"id":"b2","msg":"expected \\u003cnil\\u003e"}'
    assert canonical_signature(first) == canonical_signature(second)
    assert canonical_signature(first) == "{id: <n>, msg: expected ?nil?}"
    assert canonical_signature('{"name":"caf\\u00e9"}') == "{name: caf?}"
    # Without a brace the text is not JSON and keeps its escape as any token.
    assert canonical_signature("got \\u003c") == "got \\<n>"


@pytest.mark.parametrize(
    "path",
    [
        "\\\\fs01\\share\\run7\\out.log",
        "\\\\fileserver\\share\\out.log",
        "\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy2\\config",
        "\\\\.\\pipe\\docker_engine",
        "C:\\runs\\7\\out.log",
    ],
)
def test_version_6_takes_a_unc_path_as_one_path(path: str) -> None:
    assert canonical_signature(f"cannot open {path} now") == "cannot open <path> now"


def test_two_backslashes_that_start_no_unc_path_stay() -> None:
    # Two backslashes inside a word, or before no second one, are no UNC path; nor after a
    # placeholder, where a word had been (a signature is its own signature).
    assert canonical_signature("0\\\\?\\") == "<n>\\\\?\\"
    assert canonical_signature("regex a\\\\b and \\\\n") == "regex a\\\\b and \\\\n"


# The property form, with the volatile values of test_signature_ecosystems.py and a few more.

LETTERS = string.ascii_lowercase
MORE: dict[str, st.SearchStrategy[str]] = {
    # a host name under a generic or special-use domain, with digits or without
    "host": st.tuples(
        st.text(LETTERS + string.digits + "-", min_size=1, max_size=10).filter(
            lambda s: s[0] != "-" and s[-1] != "-"
        ),
        st.sampled_from(["example.com", "prod.example.net", "ec2.internal", "corp.example.co.uk"]),
    ).map(lambda t: f"{t[0]}.{t[1]}"),
    # kubectl's ages: "45s", "5m30s", "12h", "3d4h"
    "age": st.integers(1, 8 * 86400 - 1).map(
        lambda s: (
            f"{s}s"
            if s < 120
            else f"{s // 60}m{s % 60}s"
            if s < 600
            else f"{s // 60}m"
            if s < 3 * 3600
            else f"{s // 3600}h{s // 60 % 60}m"
            if s < 8 * 3600
            else f"{s // 3600}h"
            if s < 48 * 3600
            else f"{s // 86400}d{s // 3600 % 24}h"
        )
    ),
    "hexid": st.text("0123456789abcdef", min_size=8, max_size=16).filter(
        lambda s: any(c.isdigit() for c in s)
    ),
}
STRATEGIES = {**VOLATILE, **MORE}

#: ecosystem -> templates; ``{kind}`` is a hole filled from ``STRATEGIES[kind]``.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "hosts": (
        "dial tcp: lookup {host} on {ipv4}:53: no such host",
        "ssh: connect to host {host} port {port}: Connection timed out",
    ),
    "kubernetes": ("{pod}   0/1     CrashLoopBackOff   {count} ({age} ago)   {age}",),
    "json": (
        '{{"error":"timeout","request_id":"{hexid}","host":"{host}","elapsed":"{age}",'
        '"ts":"{iso}"}}',
    ),
}
TEMPLATE_CASES = template_params(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATE_CASES)
def test_any_volatile_values_in_a_template_give_one_signature(template: str) -> None:
    assert_fillings_share_a_signature(template, STRATEGIES)
