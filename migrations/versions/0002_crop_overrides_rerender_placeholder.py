"""crop overrides, re-render, firefly options, placeholder

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:59:05.882603

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crop_overrides', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('rerender_ratios', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('ai_options', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('placeholder', sa.Boolean(), server_default=sa.text('0'), nullable=False))



def downgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('placeholder')
        batch_op.drop_column('ai_options')
        batch_op.drop_column('rerender_ratios')
        batch_op.drop_column('crop_overrides')

