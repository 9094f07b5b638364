"""The built-in category catalogue: application and domain rules.

Order matters: the first category whose rule matches wins, and a matching domain
beats a matching application (a browser on github.com is development).
"""

from __future__ import annotations

from screenaware.activity.attribution import CategoryRule, category_uuid

_CATALOGUE: list[tuple[str, list[str], list[str]]] = [
    (
        "development",
        [
            "code", "code-insiders", "devenv", "idea", "idea64", "pycharm", "pycharm64",
            "webstorm", "webstorm64", "clion", "goland", "rider", "rider64", "phpstorm",
            "sublime_text", "atom", "vim", "gvim", "nvim", "emacs", "xcode",
            "android studio", "studio64", "eclipse", "netbeans", "git", "gitkraken",
            "sourcetree", "windowsterminal", "cmd", "powershell", "pwsh", "terminal",
            "iterm2", "gnome-terminal", "konsole", "alacritty", "kitty", "wezterm",
            "docker desktop", "postman", "insomnia", "dbeaver", "datagrip",
        ],
        [
            "github.com", "gitlab.com", "bitbucket.org", "stackoverflow.com",
            "stackexchange.com", "docs.python.org", "pypi.org", "npmjs.com",
            "developer.mozilla.org", "readthedocs.io", "docs.rs", "crates.io",
            "localhost",
        ],
    ),
    (
        "communication",
        [
            "outlook", "olk", "thunderbird", "mail", "slack", "teams", "ms-teams",
            "zoom", "zoom.us", "skype", "discord", "telegram", "signal", "whatsapp",
            "mattermost", "element", "webex",
        ],
        [
            "mail.google.com", "outlook.live.com", "outlook.office.com", "slack.com",
            "teams.microsoft.com", "zoom.us", "meet.google.com", "web.whatsapp.com",
            "web.telegram.org", "discord.com", "mail.yahoo.com", "proton.me",
        ],
    ),
    (
        "office",
        [
            "winword", "excel", "powerpnt", "onenote", "msaccess", "mspub", "soffice",
            "soffice.bin", "libreoffice", "swriter", "scalc", "simpress", "pages",
            "numbers", "keynote", "acrord32", "acrobat", "evince", "okular", "notion",
            "obsidian", "evernote",
        ],
        [
            "docs.google.com", "sheets.google.com", "slides.google.com",
            "drive.google.com", "office.com", "sharepoint.com", "onedrive.live.com",
            "notion.so", "dropbox.com", "confluence.atlassian.com", "atlassian.net",
            "trello.com", "asana.com",
        ],
    ),
    (
        "design",
        [
            "photoshop", "illustrator", "indesign", "afterfx", "premiere pro",
            "adobe premiere pro", "lightroom", "figma", "sketch", "gimp", "gimp-2.10",
            "inkscape", "blender", "krita", "affinity designer", "affinity photo",
            "xd", "canva",
        ],
        ["figma.com", "canva.com", "dribbble.com", "behance.net", "miro.com"],
    ),
    (
        "social",
        [],
        [
            "facebook.com", "twitter.com", "x.com", "instagram.com", "linkedin.com",
            "reddit.com", "tiktok.com", "pinterest.com", "mastodon.social",
            "threads.net", "bsky.app", "news.ycombinator.com",
        ],
    ),
    (
        "media",
        [
            "vlc", "spotify", "itunes", "music", "wmplayer", "mpv", "netflix",
            "steam", "epicgameslauncher", "obs", "obs64", "audacity",
        ],
        [
            "youtube.com", "youtu.be", "netflix.com", "twitch.tv", "spotify.com",
            "vimeo.com", "soundcloud.com", "primevideo.com", "disneyplus.com",
        ],
    ),
    (
        "system",
        [
            "explorer", "finder", "taskmgr", "systemsettings", "control",
            "system preferences", "system settings", "gnome-control-center",
            "nautilus", "dolphin", "thunar", "lockapp", "searchui", "searchhost",
            "shellexperiencehost", "startmenuexperiencehost", "activity monitor",
            "mmc", "regedit",
        ],
        [],
    ),
    (
        "browsing",
        [
            "chrome", "google chrome", "firefox", "msedge", "safari", "opera",
            "brave", "vivaldi", "chromium", "iexplore", "arc",
        ],
        [],
    ),
    # Imported calendar time (screenaware.integrations); no application matches it.
    ("meetings", [], []),
]  # fmt: skip

BUILTIN_CATEGORIES: tuple[CategoryRule, ...] = tuple(
    CategoryRule(
        uuid=category_uuid(name),
        name=name,
        applications=frozenset(apps),
        domains=tuple(domains),
    )
    for name, apps, domains in _CATALOGUE
)
