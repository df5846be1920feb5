"""A LangChain app with ragmem inside: its own prompt and chain, ragmem's retriever, local chat
model and chat history (the conversation lands in the same store `ragmem memory` shows).

    python examples/langchain_app.py [QUESTION ...] [--model PATH] [--session ID] [--max-new-tokens N]

Ingest first (`ragmem ingest docs/`). Settings come from ragmem.toml and RAGMEM_* variables;
the flags override them. It needs a language model: a local folder (--model) or a server.
"""

from __future__ import annotations

import argparse
from operator import itemgetter

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from rag_memory import RagPipeline, Settings

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer from these numbered passages only and cite them as [n].\n\n{context}"),
    MessagesPlaceholder("history"),
    ("human", "{question}"),
])


def format_docs(docs) -> str:
    return "\n\n".join(f"[{i}] ({d.metadata['source']}) {d.page_content}" for i, d in enumerate(docs, 1))


def build_chat(rag: RagPipeline, user_id: str) -> RunnableWithMessageHistory:
    chain = (
        {"context": itemgetter("question") | rag.as_retriever(top_k=3) | format_docs,
         "question": itemgetter("question"), "history": itemgetter("history")}
        | PROMPT | rag.as_chat_model() | StrOutputParser()
    )
    return RunnableWithMessageHistory(
        chain, lambda session_id: rag.chat_history(session_id, user_id),
        input_messages_key="question", history_messages_key="history",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*",
                        default=["How does re-ingest treat deleted files?", "它会删除哪些数据？"])
    parser.add_argument("--model", help="local model folder or cached hub id (setting generator_model)")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--session", default="langchain-app")
    parser.add_argument("--user", default="demo")
    args = parser.parse_args(argv)

    rag = RagPipeline(Settings.load({"generator_model": args.model, "max_new_tokens": args.max_new_tokens}))
    chat = build_chat(rag, args.user)
    for question in args.questions:
        print(f"Q: {question}\nA: ", end="")
        for piece in chat.stream({"question": question}, config={"configurable": {"session_id": args.session}}):
            print(piece, end="", flush=True)
        print()
    print(f"({len(rag.chat_history(args.session, args.user).messages)} messages in session {args.session!r})")


if __name__ == "__main__":
    main()
