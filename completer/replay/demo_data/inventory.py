"""A small inventory module: the file `completer demo` retypes by default."""

import json
import os
from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0
    tags: list = field(default_factory=list)

    def total(self):
        return self.price * self.quantity


class Inventory:
    def __init__(self, path=None):
        self.path = path
        self.items = {}

    def add(self, item):
        if item.name in self.items:
            raise KeyError(item.name)
        self.items[item.name] = item

    def remove(self, name):
        del self.items[name]

    def get(self, name, default=None):
        return self.items.get(name, default)

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items.values())

    def total_value(self):
        return sum(item.total() for item in self)

    def find(self, tag):
        result = []
        for item in self:
            if tag in item.tags:
                result.append(item)
        return result

    def save(self):
        if self.path is None:
            raise ValueError("no path")
        data = [item.__dict__ for item in self]
        with open(self.path, "w") as f:
            json.dump(data, f, indent=2)

    def load(self):
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            data = json.load(f)
        for entry in data:
            self.add(Item(**entry))
