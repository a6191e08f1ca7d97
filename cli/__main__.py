"""./taxbot COMMAND — see ``./taxbot help``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from cli import paths
from cli.config import RuntimeConfig
from cli.runtime import fail, run

HELP = """用法：./taxbot 命令 [参数]

  setup                 创建两个虚拟环境（按锁文件），训练模型，构建知识库索引
  run [--model PATH]    在本机回环地址上启动全部进程（Rasa、动作服务器、服务应用），打印地址；Ctrl-C 全部停止
  train [--force]       仅在配置、领域或训练数据变化时训练模型
  chat [--sender ID]    在终端里和运行中的助手对话
  nlu parse             从标准输入逐行读句子，每行输出一个 JSON（意图、置信度、排序、实体）
  nlu report            在留出测试集（tests/nlu）上评估 NLU，写 reports/nlu.json
  test [部分…]          运行全部测试：validate unit nlu conversations system（默认全部）
  bench                 运行 bench/ 下的性能测试并打印数字
  kb build|search|lint|eval|calibrate|status
                        知识库：构建索引、检索、检查条目、评测（见 ./taxbot kb）
  asr transcribe 文件… [--json] [--engine whisper|vosk|vosk-server]
                        识别录音（WAV、FLAC、AMR、G.711），每个文件一行结果；asr say "文本" --out F.wav 合成语音
  records import PATH   从 CSV 导入纳税人档案（目录或单个文件）
  records export DIR    把纳税人档案导出为 CSV
  desk user add NAME --role agent|supervisor|editor|admin [--groups consult,invoice] [--name 显示名]
                        新建坐席工作台用户（密码交互输入，或取自 TAXBOT_DESK_PASSWORD）；desk user list|disable NAME

配置：环境变量（TAXBOT_ 前缀）或项目根目录的 .env，见 README。"""


def load_config() -> RuntimeConfig:
    try:
        return RuntimeConfig()
    except ValidationError as exc:
        fail(f"配置有误：\n{exc}", code=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taxbot", add_help=False)
    parser.add_argument("command", nargs="?", default="help")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    command, args = ns.command, ns.args

    if command in {"help", "-h", "--help"}:
        print(HELP)
        return 0
    config = load_config()

    if command == "setup":
        from cli.kb import ensure_index
        from cli.model import ensure_model

        ensure_model(config)
        ensure_index(config)
        run([paths.SERVICE_PYTHON, "-m", "asr.cli", "models"], config)
        print("[setup] 就绪。启动：./taxbot run    测试：./taxbot test")
        return 0
    if command == "train":
        from cli.model import ensure_model

        ensure_model(config, force="--force" in args)
        return 0
    if command == "run":
        from cli.kb import ensure_index
        from cli.model import ensure_model
        from cli.supervisor import run_all

        ensure_index(config)
        model = Path(args[args.index("--model") + 1]) if "--model" in args[:-1] else ensure_model(config)
        if not model.exists():
            fail(f"模型文件不存在：{model}", code=2)
        return run_all(config, model.resolve())
    if command == "chat":
        from cli.chat import chat

        sender = args[args.index("--sender") + 1] if "--sender" in args[:-1] else None
        return chat(config, sender)
    if command == "nlu":
        from cli.model import ensure_model

        if not args or args[0] not in {"parse", "report"}:
            fail("用法：./taxbot nlu parse | ./taxbot nlu report", code=2)
        model = ensure_model(config)
        extra = ["--data", str(paths.NLU_TEST_DATA), "--out", str(paths.REPORTS_DIR / "nlu.json")] if args[0] == "report" else []
        return run([paths.RASA_PYTHON, "-m", "cli.rasa_tools", args[0], "--model", model, *extra, *args[1:]], config, check=False).returncode
    if command == "test":
        from cli.testing import run_tests

        return run_tests(config, args)
    if command == "bench":
        from cli.testing import run_bench

        return run_bench(config, args)
    if command == "kb":
        from cli.kb import main as kb_main

        return kb_main(config, args)
    if command == "asr":
        return run([paths.SERVICE_PYTHON, "-m", "asr.cli", *args], config, check=False).returncode
    if command == "records":
        return run([paths.SERVICE_PYTHON, "-m", "service.records", *args], config, check=False).returncode
    if command == "desk":
        if not args or args[0] != "user":
            fail("用法：./taxbot desk user add|list|disable …", code=2)
        return run([paths.SERVICE_PYTHON, "-m", "service.desk.users", *args[1:]], config, check=False).returncode
    fail(f"未知命令 {command!r}。\n\n{HELP}", code=2)


if __name__ == "__main__":
    sys.exit(main())
