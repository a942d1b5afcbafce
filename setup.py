"""Install flowmatch; every setting comes from `settings.ini` (nbdev's single source)."""
from configparser import ConfigParser
from packaging.requirements import Requirement
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': 'Apache-2.0'}  # SPDX expressions (license classifiers are deprecated)
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

def reqs(key):
    "Requirements listed under `key`, checked to parse now rather than at install time."
    return [str(Requirement(r)) for r in cfg.get(key, '').split()]

min_python = cfg['min_python']
setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    license=licenses[cfg['license']],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'],
                 'Natural Language :: ' + cfg['language']] +
                ['Programming Language :: Python :: ' + v for v in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['flowmatch', 'flowmatch.*']) + ['flowmatch.configs'],
    package_dir={'flowmatch.configs': 'configs'},  # configs/*.yaml ship inside the package: `flowmatch demo` works when installed
    package_data={'flowmatch.configs': ['*.yaml']},
    include_package_data=True,
    install_requires=reqs('requirements'),
    # optional parts, e.g. `pip install "flowmatch[notebooks]"`: what only some users need (see settings.ini)
    extras_require={k: reqs(f'{k}_requirements') for k in ('dev', 'notebooks', 'parquet', 'lpips', 'inception')},
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    author=cfg['author'], author_email=cfg['author_email'],
    description=cfg['description'], keywords=cfg['keywords'],
)
