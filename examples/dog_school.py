#!/usr/bin/env python3
"""The `eventsourcing` library's "dog school" application, persisted in SierraDB.

The application code is the library's own example; only the environment changes:
PERSISTENCE_MODULE=sierradb.eventsourcing selects this project's persistence module.

    pip install 'sierradb[eventsourcing]'
    sierradb --dir ./data &
    python examples/dog_school.py
"""

from __future__ import annotations

import argparse
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application[UUID]):
    def register_dog(self, name: str) -> UUID:
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: UUID, trick: str) -> None:
        dog: Dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_dog(self, dog_id: UUID) -> dict[str, Any]:
        dog: Dog = self.repository.get(dog_id)
        return {"name": dog.name, "tricks": tuple(dog.tricks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:9090", help="node address(es), host:port")
    args = parser.parse_args()

    school = DogSchool(
        env={"PERSISTENCE_MODULE": "sierradb.eventsourcing", "SIERRADB_ADDRESSES": args.address}
    )
    try:
        dog_id = school.register_dog("Fido")
        school.add_trick(dog_id, "roll over")
        school.add_trick(dog_id, "play dead")
        print("dog:", school.get_dog(dog_id))

        # The application sequence: this application's events, in one total order.
        last = school.recorder.max_notification_id() or 0
        for n in school.notification_log.select(start=max(1, last - 2), limit=3):
            print(f"  notification {n.id}: {n.topic} v{n.originator_version}")
    finally:
        school.close()


if __name__ == "__main__":
    main()
