"""The external bus API from Python, against a real `xcomponent-ai runtime` process, on Redis
(redis-py) and on RabbitMQ (pika): a client subscribes to state changes, creates instances by
command and gets the replies on its own replyTo channel, sends an event to one instance,
broadcasts an event with filters, and sees every state change arrive (docs/bus-api.md).

Environment:
  XC_BIN             the xcomponent-ai binary (required)
  XC_TEST_REDIS_URL  Redis URL (default redis://127.0.0.1:6379); the test is skipped for Redis
                     only when XC_BUS_API_BROKERS leaves it out
  XC_TEST_AMQP_URL   RabbitMQ URL (default amqp://guest:guest@127.0.0.1:5672/%2f)
  XC_BUS_API_BROKERS comma-separated brokers to test (default: redis,rabbitmq)

Run: python3 tests/python/test_bus_api.py (exit status 0 when every broker passed).
"""

import json
import os
import subprocess
import sys
import time
import uuid

import pika
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
COMPONENT_FILE = os.path.join(HERE, "bus_api_desk.yaml")
COMPONENT = "BusApiDesk"
MACHINE = "Ticket"
# The longest wait for one expected message (a reply, an announce, a state change).
WAIT_SECONDS = 15
# RabbitMQ carries the channels on this topic exchange; the routing key is the channel name with
# ':' replaced by '.' (docs/buses.md).
EXCHANGE = "xcomponent.events"

STATE_CHANGE = "fsm:events:state_change"
INSTANCE_COMPLETED = "fsm:events:instance_completed"
ANNOUNCE = "fsm:registry:announce"
CREATE_INSTANCE = "fsm:commands:create_instance"
TRIGGER_EVENT = "fsm:commands:trigger_event"
BROADCAST = "fsm:commands:broadcast"
COMMAND_RESPONSE = "fsm:responses:command"


class RedisClient:
    """Channels are Redis pub/sub channels of the same name."""

    def __init__(self, url, channels):
        self.connection = redis.Redis.from_url(url)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(*channels)
        # The subscription is active once the server confirmed it.
        for _ in channels:
            confirmation = self.pubsub.get_message(timeout=5)
            assert confirmation and confirmation["type"] == "subscribe", confirmation

    def publish(self, channel, message):
        self.connection.publish(channel, json.dumps(message))

    def receive(self, timeout):
        """(channel, JSON) of the next message, or None after `timeout` seconds."""
        message = self.pubsub.get_message(timeout=timeout)
        if message is None or message["type"] != "message":
            return None
        return message["channel"].decode(), json.loads(message["data"])

    def close(self):
        self.pubsub.close()
        self.connection.close()


class RabbitClient:
    """Channels are routing keys on the topic exchange `xcomponent.events`."""

    def __init__(self, url, channels):
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        # Same declaration as the runtime's (a durable topic exchange).
        self.channel.exchange_declare(exchange=EXCHANGE, exchange_type="topic", durable=True)
        declared = self.channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        self.queue = declared.method.queue
        self.routes = {}
        for name in channels:
            key = name.replace(":", ".")
            self.routes[key] = name
            self.channel.queue_bind(queue=self.queue, exchange=EXCHANGE, routing_key=key)

    def publish(self, channel, message):
        self.channel.basic_publish(
            exchange=EXCHANGE,
            routing_key=channel.replace(":", "."),
            body=json.dumps(message).encode(),
            properties=pika.BasicProperties(content_type="application/json"),
        )

    def receive(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            method, _properties, body = self.channel.basic_get(queue=self.queue, auto_ack=True)
            if method is not None:
                return self.routes.get(method.routing_key, method.routing_key), json.loads(body)
            if time.monotonic() >= deadline:
                return None
            self.connection.sleep(0.05)

    def close(self):
        self.connection.close()


class Inbox:
    """Everything a client received, so a test can wait for one message among others."""

    def __init__(self, client):
        self.client = client
        self.seen = []

    def wait_for(self, what, predicate, timeout=WAIT_SECONDS):
        """The first (channel, message) satisfying `predicate`, received now or within `timeout`."""
        for index, item in enumerate(self.seen):
            if predicate(*item):
                return self.seen.pop(index)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.client.receive(max(0.05, deadline - time.monotonic()))
            if item is None:
                continue
            if predicate(*item):
                return item
            self.seen.append(item)
        raise AssertionError(f"{what}: nothing within {timeout}s (received: {self.seen[-10:]})")

    def reply(self, reply_to, request_id):
        """The outcome of the command `request_id`, answered on `reply_to`."""
        _, message = self.wait_for(
            f"reply to {request_id} on {reply_to}",
            lambda channel, body: channel == reply_to and body.get("requestId") == request_id,
        )
        assert message["schemaVersion"] == 1, message
        return message["outcome"]


def start_runtime(binary, broker_url, name):
    return subprocess.Popen(
        [binary, "runtime", COMPONENT_FILE, "--broker", broker_url, "--name", name,
         "--store", "memory", "--heartbeat-ms", "1000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_scenario(broker, client_class, url, binary):
    token = uuid.uuid4().hex[:12]
    runtime_name = f"bus-api-test-{token}"
    reply_to = f"fsm:responses:python-{token}"
    client = client_class(url, [STATE_CHANGE, INSTANCE_COMPLETED, ANNOUNCE, COMMAND_RESPONSE, reply_to])
    inbox = Inbox(client)
    process = start_runtime(binary, url, runtime_name)
    try:
        # The runtime announces itself once it listens to the command channels.
        inbox.wait_for(
            f"{runtime_name} announces itself",
            lambda channel, body: channel == ANNOUNCE and body.get("runtimeName") == runtime_name,
        )

        # Creations, answered on our own channel.
        tickets = []
        for priority in (1, 5, 9):
            request_id = f"create-{priority}-{token}"
            client.publish(CREATE_INSTANCE, {
                "componentName": COMPONENT, "machineName": MACHINE,
                "context": {"run": token, "priority": priority},
                "requestId": request_id, "replyTo": reply_to,
            })
            outcome = inbox.reply(reply_to, request_id)
            assert outcome["status"] == "created", outcome
            tickets.append(outcome["instanceId"])
        ours = set(tickets)

        def changed(instance, new_state):
            inbox.wait_for(
                f"{instance} enters {new_state}",
                lambda channel, body: channel == STATE_CHANGE
                and body["data"].get("instanceId") == instance
                and body["data"].get("newState") == new_state,
            )

        # One event to one instance.
        request_id = f"escalate-{token}"
        client.publish(TRIGGER_EVENT, {
            "componentName": COMPONENT, "instanceId": tickets[0],
            "event": {"type": "ESCALATE", "payload": {}},
            "requestId": request_id, "replyTo": reply_to,
        })
        outcome = inbox.reply(reply_to, request_id)
        assert outcome == {"status": "transitioned", "instanceId": tickets[0],
                           "newState": "Escalated"}, outcome
        changed(tickets[0], "Escalated")

        # A broadcast with filters: this run's open tickets of priority 5 or more.
        request_id = f"broadcast-{token}"
        client.publish(BROADCAST, {
            "componentName": COMPONENT, "machineName": MACHINE, "state": "Open",
            "event": {"type": "ESCALATE"},
            "filters": [{"property": "run", "operator": "===", "value": token},
                        {"property": "priority", "operator": ">=", "value": 5}],
            "requestId": request_id, "replyTo": reply_to,
        })
        outcome = inbox.reply(reply_to, request_id)
        assert outcome == {"status": "broadcast", "count": 2}, outcome
        changed(tickets[1], "Escalated")
        changed(tickets[2], "Escalated")

        # Every escalated ticket of this run closes; each completion is published.
        request_id = f"close-{token}"
        client.publish(BROADCAST, {
            "componentName": COMPONENT, "machineName": MACHINE, "state": "Escalated",
            "event": {"type": "CLOSE"},
            "filters": [{"property": "run", "value": token}],
            "requestId": request_id, "replyTo": reply_to,
        })
        outcome = inbox.reply(reply_to, request_id)
        assert outcome == {"status": "broadcast", "count": 3}, outcome
        completed = set()
        while completed != ours:
            _, message = inbox.wait_for(
                "completions",
                lambda channel, body: channel == INSTANCE_COMPLETED
                and body["data"].get("instanceId") in ours - completed,
            )
            completed.add(message["data"]["instanceId"])

        # An invalid replyTo is refused (answered on the shared channel), nothing is run.
        request_id = f"refused-{token}"
        client.publish(CREATE_INSTANCE, {
            "componentName": COMPONENT, "machineName": MACHINE,
            "requestId": request_id, "replyTo": "fsm:commands:create_instance",
        })
        outcome = inbox.reply(COMMAND_RESPONSE, request_id)
        assert outcome["status"] == "failed" and "replyTo" in outcome["error"], outcome
        print(f"bus API over {broker}: ok (runtime {runtime_name})")
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        client.close()
    if process.returncode not in (0, -15):
        sys.stderr.write(stderr.decode(errors="replace")[-4000:])
        raise AssertionError(f"the runtime over {broker} exited with {process.returncode}")


def main():
    binary = os.environ.get("XC_BIN")
    if not binary or not os.access(binary, os.X_OK):
        sys.exit("test_bus_api.py: set XC_BIN to the xcomponent-ai binary")
    brokers = {
        "redis": (RedisClient, os.environ.get("XC_TEST_REDIS_URL", "redis://127.0.0.1:6379")),
        "rabbitmq": (RabbitClient, os.environ.get(
            "XC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")),
    }
    chosen = os.environ.get("XC_BUS_API_BROKERS", "redis,rabbitmq").split(",")
    started = time.monotonic()
    for broker in chosen:
        if broker not in brokers:
            sys.exit(f"test_bus_api.py: unknown broker {broker!r} (redis, rabbitmq)")
        client_class, url = brokers[broker]
        run_scenario(broker, client_class, url, binary)
    print(f"test_bus_api.py: {len(chosen)} broker(s) passed in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
