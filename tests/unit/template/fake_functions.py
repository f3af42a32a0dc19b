"""Template functions loaded by `module:attribute` in the tests."""


def fiscal_quarter(date: str) -> str:
    month = int(date[5:7])
    return f"{date[:4]}Q{(month - 1) // 3 + 1}"


class helpers:
    @staticmethod
    def shout(text: str) -> str:
        return text.upper() + "!"
